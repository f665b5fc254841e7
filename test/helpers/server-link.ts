/**
 * Plumbing for the specs of the client's kept connection to the server (agent/client/server-link.ts,
 * agent/server/client-connection.ts): a flow whose server exports metrics, its counters by name,
 * and a library client that makes a whole rendezvous per open() (no session), so that every
 * open() is a connection request.
 */
import { createClient, type Client, type ClientOptions } from '../../agent/client/client.js';
import { freePort } from '../../scripts/lib/free-port.js';
import type { LoopbackSetupOptions } from '../../scripts/lib/loopback-setup.js';
import { startFlow, type Flow, type Scope } from './flow.js';
import { httpGet } from './multi-node.js';

export interface CountedFlow extends Flow {
  /** The sum of a metric's samples whose labels include `label` (e.g. 'event="opened"'), or all of them. */
  metric(name: string, label?: string): Promise<number>;
}

/** `serverExtra`: more of the server's settings (e.g. a [requests] or [limits] table). */
export async function startCountedFlow(
  t: Scope,
  opts: Omit<LoopbackSetupOptions, 'dir' | 'serverExtra'> & { serverExtra?: string },
): Promise<CountedFlow> {
  const metricsPort = await freePort();
  const flow = await startFlow(t, {
    ...opts,
    serverExtra: `[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPort}\n${opts.serverExtra ?? ''}`,
  });
  return {
    ...flow,
    async metric(name, label) {
      const { body } = await httpGet(metricsPort, '/metrics');
      let n = 0;
      for (const line of body.split('\n')) {
        const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
        if (m && m[1] === name && (label === undefined || (m[2] ?? '').includes(label))) n += Number(m[3]);
      }
      return n;
    },
  };
}

/** A library client of the flow's device: a rendezvous per open(), the server connection kept unless `extra` says. */
export function rendezvousClient(t: Scope, flow: Flow, service: string, extra: Partial<ClientOptions> = {}): Client {
  const client = createClient({
    server: { host: '127.0.0.1', port: flow.setup.tlsPort },
    serverName: 'localhost',
    caPem: flow.setup.caPem,
    equipmentId: flow.setup.equipmentId,
    password: flow.setup.password,
    service,
    accept: { host: '127.0.0.1', port: 0 },
    sessionIdleMs: 0,
    ...extra,
  });
  t.teardown(() => client.stop());
  return client;
}

/** TLS handshakes the server made, full and resumed. */
export const handshakes = (flow: CountedFlow): Promise<number> => flow.metric('peerlink_tls_handshakes_total');
/** Client connections the server opened (each began with a TLS handshake). */
export const clientConnections = (flow: CountedFlow): Promise<number> => flow.metric('peerlink_client_connections_total', 'event="opened"');
/** Connection requests answered ok. */
export const connected = (flow: CountedFlow): Promise<number> => flow.metric('peerlink_connection_requests_total', 'outcome="connected"');
