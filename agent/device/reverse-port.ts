/**
 * The agent's reverse port (the client dials the device, docs/paths.md) and its forwarding on the
 * home gateway (UPnP IGD or NAT-PMP): the listener, the mapping made in the background (start-up
 * must not wait for gateway discovery), renewed on a timer, recorded in the state directory so a
 * crashed run's mapping is replaced at the next start, and removed on a clean stop.
 */
import type { Logger } from 'pino';
import { followSignal } from '../common/linked-signal.js';
import type { PortMapping } from '../nat/port-mapping.js';
import { clearMappingRecord, readMappingRecord, writeMappingRecord, type MappingRecord } from '../nat/mapping-record.js';
import type { Endpoint } from '../protocol/address.js';
import type { ReverseOffer } from './device-paths.js';
import { createReverseListener, type ReverseListener } from './reverse-listener.js';
import type { AgentSettings } from './settings.js';

/** One renewal's exchange with the gateway may take this long. */
const RENEW_TIMEOUT_MS = 10_000;

export interface ReversePortOptions {
  /** The agent's settings as they are now (reverse.*, stateDir). */
  readonly settings: () => AgentSettings;
  readonly equipmentId: string;
  readonly logger: Logger;
}

export interface ReversePort {
  /** Listen (when the strategy is on) and map the port in the background; `signal` is the agent's run. */
  start(signal: AbortSignal): Promise<void>;
  /** After the agent's signal aborted: the mapping removed (and its record), the listener closed. */
  stop(): Promise<void>;
  /** What a request session offers the client (request-session.ts); undefined when off. */
  offer(): ReverseOffer | undefined;
  mapping(): { readonly externalHost: string; readonly externalPort: number; readonly via: 'upnp' | 'natpmp' } | null;
  port(): number | null;
}

export function createReversePort(o: ReversePortOptions): ReversePort {
  const { logger } = o;
  let signal: AbortSignal = AbortSignal.abort();
  let listener: ReverseListener | null = null;
  let mapping: PortMapping | null = null;
  let mappingDone: Promise<void> = Promise.resolve();
  let renewTimer: NodeJS.Timeout | undefined;
  /** The mapping on the gateway as last recorded in the state directory (a crashed run's, at start). */
  let record: MappingRecord | null = null;

  /**
   * A signal for one gateway exchange that follows the agent's: not AbortSignal.any with the agent's
   * own signal, which on Node 20 keeps a WeakRef per call for the life of the process (linked-signal.ts).
   */
  async function underAgentSignal<T>(ms: number | null, f: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const c = new AbortController();
    const unlink = followSignal(signal, c);
    const timer = ms === null ? undefined : setTimeout(() => c.abort(new Error(`no answer within ${ms} ms`)), ms);
    try {
      return await f(c.signal);
    } finally {
      clearTimeout(timer);
      unlink();
    }
  }

  async function recordMapping(r: MappingRecord | null): Promise<void> {
    const same = r && record && JSON.stringify(r) === JSON.stringify(record);
    if (same || (r === null && record === null)) return;
    record = r;
    const dir = o.settings().stateDir;
    try {
      if (r) await writeMappingRecord(dir, r);
      else await clearMappingRecord(dir);
    } catch (err) {
      logger.warn(
        { dir, err: (err as Error).message },
        'cannot record the port mapping in the state directory: after a crash the next start cannot replace it (it lapses with its lease)',
      );
    }
  }

  async function mapPort(port: number): Promise<void> {
    const mode = o.settings().reverse.portMapping;
    if (mode === 'off') return;
    try {
      const { mapTcpPort } = await import('../nat/port-mapping.js');
      const m = await underAgentSignal(null, (s) =>
        mapTcpPort({ port, mode, logger, signal: s, description: `peerlink ${o.equipmentId}`, previous: record }),
      );
      if (signal.aborted) {
        await m?.release().catch(() => undefined);
        return;
      }
      mapping = m;
      if (m) await recordMapping(m.record);
      if (!m) logger.info({ mode }, 'no gateway forwards the reverse port; clients reach us by the other paths');
    } catch (err) {
      if (!signal.aborted) logger.warn({ err: (err as Error).message }, 'port mapping failed');
    }
    scheduleRenewal(port);
  }

  /**
   * Renew on a timer: the gateway may have restarted and forgotten the mapping (or have gone, or
   * a new one appeared). A renewal that fails drops the mapping and searches again next time.
   */
  function scheduleRenewal(port: number): void {
    if (signal.aborted) return;
    renewTimer = setTimeout(() => {
      if (signal.aborted) return;
      const m = mapping;
      const attempt = m
        ? underAgentSignal(RENEW_TIMEOUT_MS, (s) => m.renew(s)).then(
            () => logger.info({ external: `${m.externalHost}:${m.externalPort}`, via: m.via }, 'port mapping renewed'),
            (err: Error) => {
              if (signal.aborted) return;
              logger.warn({ err: err.message }, 'port mapping lost; searching for a gateway again');
              mapping = null;
              void m.release().catch(() => undefined);
              return mapPort(port).then(() => undefined);
            },
          )
        : mapPort(port).then(() => undefined);
      mappingDone = attempt.then(() => {
        if (m && mapping === m) scheduleRenewal(port);
      });
    }, o.settings().reverse.mappingRenewMs);
    renewTimer.unref();
  }

  return {
    async start(runSignal) {
      signal = runSignal;
      const settings = o.settings();
      if (!settings.reverse.enabled) return;
      if (settings.reverse.portMapping !== 'off') {
        record = await readMappingRecord(settings.stateDir).catch((err: Error) => {
          logger.warn(
            { err: err.message },
            'port mapping record unreadable: a mapping a previous run left is not replaced (it lapses with its lease)',
          );
          return null;
        });
        if (record)
          logger.info(
            { via: record.via, external: record.externalPort, internalPort: record.internalPort },
            'a previous run left a port mapping: replacing it',
          );
      }
      const l = createReverseListener({
        port: settings.reverse.listenPort,
        logger,
        tokenTimeoutMs: settings.reverse.tokenTimeoutMs,
        maxPending: settings.reverse.maxPending,
      });
      await l.start();
      listener = l;
      logger.info({ port: l.port() }, 'reverse port listening');
      mappingDone = mapPort(l.port());
    },
    async stop() {
      clearTimeout(renewTimer);
      await mappingDone;
      // Remove the router's forwarding on a clean exit (the lease would otherwise linger).
      const m = mapping;
      mapping = null;
      if (m) {
        const removed = await m.release().then(
          () => true,
          (err: Error) => (logger.warn({ err: err.message }, 'could not remove the port mapping'), false),
        );
        if (removed) {
          await recordMapping(null);
          logger.info({ external: `${m.externalHost}:${m.externalPort}` }, 'port mapping removed');
        }
      }
      await listener?.stop();
      listener = null;
    },
    offer() {
      const l = listener;
      if (!l) return undefined;
      return {
        listener: l,
        endpoints: () => {
          const out: Endpoint[] = [];
          if (mapping) out.push({ address: mapping.externalHost, port: mapping.externalPort });
          // "The address you see me from": right when the device has a public address itself.
          out.push({ address: '0.0.0.0', port: l.port() });
          return out;
        },
      };
    },
    mapping: () => (mapping ? { externalHost: mapping.externalHost, externalPort: mapping.externalPort, via: mapping.via } : null),
    port: () => listener?.port() ?? null,
  };
}
