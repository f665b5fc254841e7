/**
 * What the server passes on of a device's LISTEN candidates. A device may only send the client to
 * its own public address: a router mapping on the address the server sees it from, or 0.0.0.0 / ::
 * meaning exactly that address. Anything else is dropped: a mapping made by the inner router of a
 * double NAT (unreachable), or an attempt to point the client at another host (the client would
 * open a TCP connection there).
 */
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
