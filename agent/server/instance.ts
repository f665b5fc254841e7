/**
 * One node process per core on one machine (systemd/peerlink-server@.service): instance N of the
 * same settings file listens on its ports + N (UDP, TLS, probe and metrics; 0 stays 0, "any"),
 * names itself `<redis.node_id>-N` (or, without one, hostname/UDP port as any node), and tells the
 * other nodes its TLS port + N. A node's event loop and UDP socket use one core, so a machine with
 * C cores runs instances 0..C-1 behind DNS or a UDP/TCP load balancer (docs/running-a-fleet.md).
 */
import type { ServerSettings } from './settings.js';

export const MAX_INSTANCE = 255;

const shift = (port: number, n: number): number => (port === 0 ? 0 : port + n);

/** The settings of instance `n`; a port past 65535 is an error naming the setting. */
export function instanceSettings(s: ServerSettings, n: number, file: string): ServerSettings {
  const problems: string[] = [];
  const port = (p: number, what: string): number => {
    const v = shift(p, n);
    if (v > 65535) problems.push(`${file}: ${what} + instance ${n} = ${v}: past 65535`);
    return v;
  };
  const tlsAddress = s.redis?.tlsAddress?.replace(/:(\d+)$/, (_m, p: string) => `:${port(Number(p), 'redis.tls_address port')}`);
  const out: ServerSettings = {
    ...s,
    udp: { ...s.udp, port: port(s.udp.port, 'udp.port') },
    tls: { ...s.tls, port: port(s.tls.port, 'tls.port') },
    probe: { port: port(s.probe.port, 'probe.port') },
    metrics: { ...s.metrics, port: port(s.metrics.port, 'metrics.port') },
    redis: s.redis && { ...s.redis, nodeId: s.redis.nodeId === undefined ? undefined : `${s.redis.nodeId}-${n}`, tlsAddress },
  };
  if (problems.length > 0) throw new Error(problems.join('\n'));
  return Object.freeze(out);
}
