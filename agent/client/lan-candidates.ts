/**
 * The client's side of LAN candidates (issue 14): it offers its own local address and accept port
 * in its sealed request (the server forwards it to the device only when it sees both at one
 * public address), and dials the device's LAN candidate, when the server forwarded one, under the
 * same address rules as the device (a home LAN address inside our own interface's subnet).
 */
import { lanDialRefusal, ownLanCandidate } from '../nat/lan-address.js';
import { formatEndpoint, normalizeAddress, type Endpoint } from '../protocol/address.js';
import { CandidateKind, type Candidate } from '../protocol/frames.js';

/** Our LAN candidate: the address that reached the server and the accept port, if the listener is on it. */
export function clientLanOffer(local: string | undefined, accept: { address: string; port: number }): Endpoint[] {
  const any = accept.address === '0.0.0.0' || accept.address === '::';
  if (!any && accept.address !== local) return [];
  const ep = ownLanCandidate(local, accept.port);
  return ep ? [ep] : [];
}

/** The device's LAN candidate to dial (at most one), if the server forwarded one we may dial. */
export function deviceLanTargets(candidates: readonly Candidate[], local: string | undefined): Endpoint[] {
  if (!local) return [];
  const ep = candidates.find((c) => c.kind === CandidateKind.LAN)?.endpoint;
  return ep && lanDialRefusal(ep, local) === null ? [ep] : [];
}

/** The path, for people, when the winning connection ran on the LAN; null otherwise. */
export function lanPath(
  via: string,
  to: Endpoint | null,
  lanTargets: readonly Endpoint[],
  peerAddress: string | undefined,
  offered: readonly Endpoint[],
): string | null {
  if (via === 'reverse' && to && lanTargets.includes(to))
    return `connected directly on the LAN: we dialled the device's ${formatEndpoint(to)}`;
  const mine = offered[0];
  if (via === 'dial' && mine && peerAddress) {
    // The device came from an address on our own subnet: it dialled our LAN candidate.
    const peer = normalizeAddress(peerAddress);
    if (lanDialRefusal({ address: peer, port: 1 }, mine.address) === null)
      return `connected directly on the LAN: device ${peer} dialled our ${formatEndpoint(mine)}`;
  }
  return null;
}
