/**
 * The device's side of LAN candidates (issue 14). It dials a client's LAN address only when all
 * of these hold, so that it can never be aimed at its own LAN (P3b) beyond one address the
 * password holder offered:
 * - the server vouched that client and device share a public address: it forwarded exactly one
 *   LAN candidate, and the client's observed address (PUNCH) equals our own (OBSERVED);
 * - that candidate is one the client offered in its sealed request (the server cannot change it);
 * - it is a home LAN address inside the subnet of the interface that reached the server
 *   (agent/nat/lan-address.ts), not our own address.
 * It offers its own LAN candidate (its reverse port on that interface's address) only under the
 * same vouching.
 */
import { lanDialRefusal, ownLanCandidate, type Interfaces } from '../nat/lan-address.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import { CandidateKind, type Candidate } from '../protocol/frames.js';
import type { ConnectRequest } from '../protocol/request.js';

/** The server saw the client at our public address (its PUNCH and our OBSERVED candidates agree). */
export function vouchedSameHome(told: readonly Candidate[]): boolean {
  const client = told.find((c) => c.kind === CandidateKind.PUNCH)?.endpoint;
  const self = told.find((c) => c.kind === CandidateKind.OBSERVED)?.endpoint;
  return !!client && !!self && normalizeAddress(client.address) === normalizeAddress(self.address);
}

export type LanDecision = { readonly dial: Endpoint } | { readonly dial: null; readonly reason: string | null };

/**
 * Whether to dial the client's LAN candidate, and where. `local`: the local address of our
 * connection to the server. reason null: nothing was offered (no decision to report).
 */
export function lanDialTarget(
  told: readonly Candidate[],
  request: ConnectRequest,
  local: string | undefined,
  interfaces?: Interfaces,
): LanDecision {
  const forwarded = told.filter((c) => c.kind === CandidateKind.LAN);
  if (forwarded.length === 0) return { dial: null, reason: null };
  if (forwarded.length > 1) return { dial: null, reason: 'the server forwarded more than one LAN candidate' };
  if (!vouchedSameHome(told)) return { dial: null, reason: 'the server did not see the client at our public address' };
  const ep = forwarded[0]!.endpoint;
  const sealed = (request.lan ?? []).some((o) => normalizeAddress(o.address) === normalizeAddress(ep.address) && o.port === ep.port);
  if (!sealed) return { dial: null, reason: 'the LAN candidate is not one the client offered in its sealed request' };
  if (!local) return { dial: null, reason: 'no local address' };
  const refusal = lanDialRefusal(ep, local, interfaces);
  return refusal === null ? { dial: ep } : { dial: null, reason: refusal };
}

/** Our own LAN candidate for the client (reverse port on our LAN address), when the server vouched. */
export function deviceLanOffer(told: readonly Candidate[], local: string | undefined, reversePort: number | null | undefined): Candidate[] {
  if (!vouchedSameHome(told)) return [];
  const ep = ownLanCandidate(local, reversePort);
  return ep ? [{ kind: CandidateKind.LAN, endpoint: ep }] : [];
}
