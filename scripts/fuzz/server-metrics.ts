/**
 * The server's own counters, read from its Prometheus endpoint (loopback): how many fuzz packets
 * it parsed and dropped, by reason, and how many real registrations it accepted. One connection
 * per read, closed after it, so reading does not hold a descriptor at the server.
 */
import { get } from 'node:http';

const METRICS_TIMEOUT_MS = 5_000;

/** `name{labels}` -> value, for every sample line. */
export type Metrics = ReadonlyMap<string, number>;

export function fetchMetrics(port: number): Promise<Metrics> {
  return new Promise((resolve, reject) => {
    const req = get(
      { host: '127.0.0.1', port, path: '/metrics', agent: false, headers: { connection: 'close' }, timeout: METRICS_TIMEOUT_MS },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          const out = new Map<string, number>();
          for (const line of body.split('\n')) {
            if (line.startsWith('#') || !line.trim()) continue;
            const at = line.lastIndexOf(' ');
            out.set(line.slice(0, at), Number(line.slice(at + 1)));
          }
          resolve(out);
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('metrics: no answer')));
    req.on('error', reject);
  });
}

/** Registrations by outcome (accepted, malformed, bad_tag, ...), from `peerlink_registrations_total`. */
export function registrationOutcomes(m: Metrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of m) {
    // The server adds its node label after the outcome: {outcome="accepted",node="..."}.
    const hit = /^peerlink_registrations_total\{outcome="([^"]+)"[,}]/.exec(k);
    if (hit) out[hit[1]!] = v;
  }
  return out;
}
