/**
 * The node flags production runs the agent with, read from its systemd unit
 * (systemd/peerlink-agent.service): the benches start their agents with them, as they start their
 * servers with the server unit's (server-unit.ts), so that what they measure is what a device runs.
 */
import { join } from 'node:path';
import { DIST } from './program.js';
import { unitNodeFlags } from './server-unit.js';

/** The agent's systemd unit, in the checkout. */
export const AGENT_UNIT = join(DIST, '..', 'systemd', 'peerlink-agent.service');

/** The agent unit's node flags (read once). */
export const agentNodeFlags = unitNodeFlags(AGENT_UNIT);
