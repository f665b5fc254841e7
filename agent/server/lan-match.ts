/**
 * LAN candidates at the server (issue 14): passed between client and device only when the server
 * sees both at the same public address (one home, or two homes behind one carrier-grade NAT),
 * and then only one each, a home LAN address. Otherwise they are stripped: two homes that both
 * use 192.168.1.0/24 never learn each other's private addresses, so neither dials the other's.
 */
import { isLanAddress } from '../nat/lan-address.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import { CandidateKind, type Candidate } from '../protocol/frames.js';
import { parseRequest } from '../protocol/request.js';

/** Client and device behind the same public address, as this server sees them. */
export function samePublicAddress(client: Endpoint, device: Endpoint | undefined): boolean {
  return device !== undefined && normalizeAddress(client.address) === normalizeAddress(device.address);
}

function first(endpoints: readonly Endpoint[]): Candidate[] {
  const ep = endpoints.find((e) => isLanAddress(e.address));
  return ep ? [{ kind: CandidateKind.LAN, endpoint: { address: normalizeAddress(ep.address), port: ep.port } }] : [];
}

/**
 * The client's LAN candidate for the device: the first LAN address its sealed request offers
 * (read, not verified: the device verifies the seal), or nothing unless both share a public address.
 */
export function clientLanForDevice(sealedRequest: Buffer, client: Endpoint, device: Endpoint | undefined): Candidate[] {
  if (!samePublicAddress(client, device)) return [];
  try {
    return first(parseRequest(sealedRequest).request.lan ?? []);
  } catch {
    return []; // the device refuses a malformed request anyway
  }
}

/** The device's LAN candidate for the client (from its CANDIDATES), under the same rule. */
export function deviceLanForClient(candidates: readonly Candidate[], client: Endpoint, device: Endpoint | undefined): Candidate[] {
  if (!samePublicAddress(client, device)) return [];
  return first(candidates.filter((c) => c.kind === CandidateKind.LAN).map((c) => c.endpoint));
}
