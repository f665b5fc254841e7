/**
 * Watches the running agent for the outside world: keeps the state file for
 * `peerlink-agent status` and the STATUS= line for systemd current, says READY=1 once the agent
 * is registered (or, after a grace period, with a STATUS that says why not), and judges the
 * agent's health for the watchdog (registration loop still sending).
 */
import type { Logger } from 'pino';
import type { Clock } from '../common/clock.js';
import { rejectUnknownKeys, requireOption } from '../common/options.js';
import { systemTimers, type TimerHandle, type Timers } from '../common/timers.js';
import type { Agent } from '../device/agent.js';
import type { AgentSettings } from '../device/settings.js';
import type { Notifier } from '../systemd/notify.js';
import type { Health } from '../systemd/watchdog.js';
import { STATE_FORMAT, statusLine, type AgentState, type PortMappingState } from './agent-state.js';
import { writeStateFile } from './state-file.js';

/** How often the snapshot is refreshed (written only when it changed). */
export const STATE_TICK_MS = 5_000;
/** Without a registration by then, READY=1 is sent anyway with a STATUS saying why. */
export const READY_GRACE_MS = 10_000;
/** Slack on top of two registration intervals before the loop counts as dead. */
const LOOP_SLACK_MS = 15_000;

export interface AgentMonitorOptions {
  readonly agent: Agent;
  readonly settings: () => AgentSettings;
  readonly equipmentId: string;
  readonly configFile: string;
  readonly notifier: Notifier;
  /** Where to write the state file; null: none. */
  readonly stateFile: string | null;
  /** Wall time; default: `timers`. */
  readonly clock?: Clock;
  /** The tick and the READY grace timer; default: the real clock. */
  readonly timers?: Timers;
  readonly logger?: Logger;
  readonly tickMs?: number;
  readonly readyGraceMs?: number;
}

export interface ReloadOutcome {
  readonly ok: boolean;
  readonly problems: readonly string[];
  readonly restartRequired: readonly string[];
}

export interface AgentMonitor {
  start(): void;
  /** Refresh now (after an event); resolves when the file and STATUS are written. */
  refresh(): Promise<void>;
  health(): Health;
  reloading(): Promise<void>;
  reloaded(outcome: ReloadOutcome): Promise<void>;
  stopping(): Promise<void>;
  stop(): Promise<void>;
  snapshot(): AgentState;
}

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The reverse port and the router's forwarding of it, as `status` and STATUS= show them. */
function portMappingState(settings: AgentSettings, agent: Agent): PortMappingState {
  if (!settings.reverse.enabled) return null;
  const m = agent.portMapping();
  const mode = settings.reverse.portMapping;
  return {
    state: mode === 'off' ? 'off' : m ? 'mapped' : 'none',
    reversePort: agent.reversePort(),
    external: m ? `${m.externalHost}:${m.externalPort}` : null,
    via: m?.via ?? null,
  };
}

export function createAgentMonitor(options: AgentMonitorOptions): AgentMonitor {
  rejectUnknownKeys('agent monitor options', options, [
    'agent',
    'settings',
    'equipmentId',
    'configFile',
    'notifier',
    'stateFile',
    'clock',
    'timers',
    'logger',
    'tickMs',
    'readyGraceMs',
  ]);
  const agent = requireOption('agent monitor options', 'agent', options.agent);
  const notifier = requireOption('agent monitor options', 'notifier', options.notifier);
  const timers = options.timers ?? systemTimers;
  const clock = options.clock ?? timers;
  const tickMs = options.tickMs ?? STATE_TICK_MS;
  const readyGraceMs = options.readyGraceMs ?? READY_GRACE_MS;
  const startedAt = clock.now();
  let timer: TimerHandle | undefined;
  let readyTimer: TimerHandle | undefined;
  let ready = false;
  let stopping = false;
  let lastStatusSent = '';
  let lastWritten = '';
  let reloads = 0;
  let lastReload: AgentState['lastReload'] = null;
  let served = agent.counters.get('sessionsServed');
  let lastServedAt: number | null = null;
  // A round of the registration loop ends in a send or in a failure (no ack, or the server's
  // name did not resolve): either proves the loop alive. No network is not a reason to restart.
  const rounds = (): number => agent.registrar.counters.get('sent') + agent.registrar.counters.get('ackTimeouts');
  let sent = rounds();
  let lastSendSeenAt = startedAt;
  let writing: Promise<unknown> = Promise.resolve();
  let writeFailed = false;

  function snapshot(): AgentState {
    const now = clock.now();
    const st = agent.status();
    const settings = options.settings();
    const n = agent.counters.get('sessionsServed');
    if (n !== served) {
      served = n;
      lastServedAt = now;
    }
    const base = {
      registration: st.state,
      server: { host: settings.server.host, udpPort: settings.server.udpPort, tlsPort: settings.server.tlsPort },
      publicEndpoint: st.publicEndpoint,
      lastReload,
      portMapping: portMappingState(settings, agent),
    };
    return {
      format: STATE_FORMAT,
      pid: process.pid,
      equipmentId: options.equipmentId,
      startedAt: new Date(startedAt).toISOString(),
      updatedAt: new Date(now).toISOString(),
      configFile: options.configFile,
      ...base,
      lastAckAt: iso(st.lastAckMs),
      services: [...settings.services.keys()],
      sessions: agent.counters.snapshot(),
      lastConnectionServedAt: iso(lastServedAt),
      reloads,
      statusText: statusLine(base),
    };
  }

  async function refresh(): Promise<void> {
    const s = snapshot();
    const tasks: Promise<unknown>[] = [];
    if (options.stateFile) {
      // updatedAt changes every time; compare the rest, so an idle agent writes nothing.
      const { updatedAt: _u, ...rest } = s;
      const key = JSON.stringify(rest);
      if (key !== lastWritten) {
        lastWritten = key;
        const file = options.stateFile;
        writing = writing.then(() =>
          writeStateFile(file, s).then(
            () => (writeFailed = false),
            (err) => {
              if (!writeFailed) options.logger?.warn({ err: (err as Error).message, file }, 'cannot write the state file');
              writeFailed = true;
            },
          ),
        );
        tasks.push(writing);
      }
    }
    if (!stopping) {
      const fields: Record<string, string> = {};
      if (s.statusText !== lastStatusSent) fields.STATUS = s.statusText;
      if (!ready && s.registration === 'registered') {
        ready = true;
        fields.READY = '1';
      }
      if (Object.keys(fields).length > 0) {
        lastStatusSent = s.statusText;
        tasks.push(notifier.send(fields));
      }
    }
    await Promise.all(tasks);
  }

  function tick(): void {
    const n = rounds();
    if (n !== sent) {
      sent = n;
      lastSendSeenAt = clock.now();
    }
    void refresh();
  }

  return {
    snapshot,
    refresh,
    start() {
      timer = timers.setInterval(tick, tickMs);
      timer.unref();
      readyTimer = timers.setTimeout(() => {
        if (ready || stopping) return;
        ready = true;
        const s = snapshot();
        lastStatusSent = s.statusText;
        options.logger?.warn({ status: s.statusText }, `not registered after ${readyGraceMs} ms; telling systemd we are up anyway`);
        void notifier.send({ READY: '1', STATUS: s.statusText });
      }, readyGraceMs);
      readyTimer.unref();
      void refresh();
    },
    health() {
      tick();
      // The longest gap the registrar may leave: the adaptive keepalive may stretch up to its maximum.
      const st = options.settings();
      const longest =
        st.keepalive.mode === 'adaptive' ? Math.max(st.registration.intervalMs, st.keepalive.maxIntervalMs) : st.registration.intervalMs;
      const budget = 2 * longest + LOOP_SLACK_MS;
      const quietMs = clock.now() - lastSendSeenAt;
      if (quietMs > budget) return { ok: false, reason: `registration loop made no attempt for ${quietMs} ms (budget ${budget} ms)` };
      return { ok: true };
    },
    async reloading() {
      await notifier.send({ RELOADING: '1', MONOTONIC_USEC: (process.hrtime.bigint() / 1000n).toString(), STATUS: 'reloading settings' });
    },
    async reloaded(outcome) {
      reloads++;
      ready = true;
      lastReload = { at: new Date(clock.now()).toISOString(), ...outcome };
      lastStatusSent = '';
      const s = snapshot();
      lastStatusSent = s.statusText;
      await Promise.all([notifier.send({ READY: '1', STATUS: s.statusText }), refresh()]);
    },
    async stopping() {
      stopping = true;
      await notifier.send({ STOPPING: '1', STATUS: 'stopping' });
    },
    async stop() {
      timers.clearInterval(timer);
      timers.clearTimeout(readyTimer);
      await writing;
    },
  };
}
