/** What one diagnose check learns for the next (diagnose.ts runs them in order), and a skipped check. */
import type { DeviceIdentity } from '../protocol/identity-file.js';
import type { AgentSettings } from '../device/settings.js';
import type { CheckResult } from './report.js';
import type { ProbeReply } from '../rendezvous/udp-probe.js';

export interface Found {
  settings: AgentSettings | null;
  identity: DeviceIdentity | null;
  /** The server's address the checks use: its IPv4 one, else its IPv6 one. */
  serverAddr: string | null;
  /** Each family's address of the server (null: none; a literal has one family only). */
  serverByFamily: { 4: string | null; 6: string | null };
  reply: ProbeReply | null;
  mappingReply: ProbeReply | null;
}

export const skip = (id: string, title: string, why: string): CheckResult => ({
  id,
  title,
  verdict: 'skip',
  summary: `not checked: ${why}`,
});
