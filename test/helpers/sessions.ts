/**
 * Shared plumbing for the session specs (test/sessions): a flow whose server exports metrics,
 * the number of connection requests the server has seen, and one round trip through a port.
 */
import { connect } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client } from '../../agent/client/client.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { rendezvousClient } from './server-link.js';
import { startFlow, type Flow, type Scope } from './flow.js';
import { httpGet } from './multi-node.js';

export interface MeteredFlow extends Flow {
  /** Connection requests the server has handled (every outcome): one per rendezvous. */
  rendezvous(): Promise<number>;
}

export async function startMeteredFlow(t: Scope, opts: Omit<Parameters<typeof startFlow>[1], 'serverExtra'>): Promise<MeteredFlow> {
  const metricsPort = await freePort();
  const flow = await startFlow(t, { ...opts, serverExtra: `[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPort}` });
  return {
    ...flow,
    async rendezvous() {
      const { body } = await httpGet(metricsPort, '/metrics');
      let n = 0;
      for (const line of body.split('\n')) {
        const m = /^peerlink_connection_requests_total\{[^}]*\} (\S+)$/.exec(line);
        if (m) n += Number(m[1]);
      }
      return n;
    },
  };
}

/** Connect to a local port, send `payload`, half-close, and collect the answer until close. */
export function exchange(port: number, payload: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const s = connect(port, '127.0.0.1', () => s.end(payload));
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('close', () => resolve(out));
    s.on('error', reject);
  });
}

/** A library client of the flow's device whose open() reuses one session (idle after a minute). */
export function sessionClient(t: Scope, flow: Flow, service: string): Client {
  return rendezvousClient(t, flow, service, { sessionIdleMs: 60_000 });
}

/** Write `text`, end, and collect what comes back until the stream ends. */
export function roundTrip(stream: Duplex, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (out += d));
    stream.once('end', () => resolve(out));
    stream.once('error', reject);
    stream.end(text);
  });
}
