/**
 * What the server passes on of a device's LISTEN candidates. A device may only send the client to
 * its own public address: a router mapping on the address the server sees it from, or 0.0.0.0 / ::
 * meaning exactly that address. Anything else is dropped: a mapping made by the inner router of a
 * double NAT (unreachable), or an attempt to point the client at another host (the client would
 * open a TCP connection there).
 */
import { isIP } from 'node:net';
import { CANDIDATES_MAX, CandidateKind, type Candidate } from '../protocol/frames.js';
import type { Endpoint } from '../protocol/address.js';

export function checkListenCandidates(candidates: readonly Candidate[], seen: Endpoint | undefined): Candidate[] {
  if (!seen) return [];
  const out: Candidate[] = [];
  for (const c of candidates) {
    if (c.kind !== CandidateKind.LISTEN) continue;
    const address = c.endpoint.address === '0.0.0.0' || c.endpoint.address === '::' ? seen.address : c.endpoint.address;
    if (address !== seen.address) continue;
    if (out.some((o) => o.endpoint.port === c.endpoint.port)) continue;
    out.push({ kind: CandidateKind.LISTEN, endpoint: { address, port: c.endpoint.port } });
    if (out.length === CANDIDATES_MAX) break;
  }
  return out;
}

/** A verdict's candidates as they travel to the node holding the client (Redis pub/sub, JSON). */
export function candidatesForNode(candidates: readonly Candidate[]): [number, string, number][] {
  return candidates.map((c) => [c.kind, c.endpoint.address, c.endpoint.port]);
}

/**
 * Candidates another node relayed with a verdict. Only well-formed PUNCH/LISTEN endpoints pass:
 * a message read from Redis is less trusted than a frame from a device's verified connection.
 */
export function candidatesFromNode(c: unknown): Candidate[] {
  if (!Array.isArray(c)) return [];
  const out: Candidate[] = [];
  for (const x of c.slice(0, CANDIDATES_MAX)) {
    if (!Array.isArray(x) || x.length !== 3) continue;
    const [kind, address, port] = x as [unknown, unknown, unknown];
    if ((kind !== CandidateKind.PUNCH && kind !== CandidateKind.LISTEN) || typeof address !== 'string' || !isIP(address)) continue;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    out.push({ kind, endpoint: { address, port } });
  }
  return out;
}
