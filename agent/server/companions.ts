/**
 * Companion connections (issue 14, cross-family candidates). A dual-stack client or device reaches
 * the server over one family; its peer may share only the other. So each side also opens a short
 * second connection to the server over the other family, from a bound port (the port a hole punch
 * then leaves from), and the server notes where it came from: a client's by the nonce of its sealed
 * request (which only the client, the server and the device see), a device's by the request ID, with
 * the same proof as its attach (bound to that TLS session). The exchange adds each as a PUNCH
 * candidate of that family for the other side (device-exchange.ts): addresses the server observed
 * (P3, P8), never ones a side merely claims.
 *
 * Bounded: at most COMPANIONS_MAX of each, each kept COMPANION_TTL_MS; the oldest go first. A
 * stranger who floods companions can push a real one out (that request then has its own family's
 * paths and the relay, as before), not inject one: it would need the request's nonce or proof.
 */
import { isIPv6 } from 'node:net';
import type { Clock } from '../common/clock.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import { offeredClientNonce } from '../protocol/request.js';

export const COMPANION_TTL_MS = 30_000;
export const COMPANIONS_MAX = 4096;

export interface Companions {
  /** A client's companion connection came from `seen`, for the request with this nonce. */
  client(clientNonce: Buffer, seen: Endpoint): void;
  /** A device's companion connection (its proof verified) came from `seen`, for this request. */
  device(requestId: Buffer, seen: Endpoint): void;
  /** The client's companion for a sealed request, if of another family than `main`. */
  clientFor(sealedRequest: Buffer, main: Endpoint): Endpoint | undefined;
  /** The device's companion for a request, if of another family than `main`. */
  deviceFor(requestId: Buffer, main: Endpoint | undefined): Endpoint | undefined;
  readonly size: number;
}

const familyOf = (address: string): 4 | 6 => (isIPv6(normalizeAddress(address)) ? 6 : 4);

/** `companion` if its family differs from `main`'s (the same family adds nothing). */
export function crossFamily(main: Endpoint | undefined, companion: Endpoint | undefined): Endpoint | undefined {
  if (!companion || !main) return undefined;
  return familyOf(main.address) === familyOf(companion.address) ? undefined : companion;
}

class BoundedStore {
  private readonly map = new Map<string, { endpoint: Endpoint; expiresAtMs: number }>();
  constructor(private readonly clock: Clock) {}
  put(key: string, endpoint: Endpoint): void {
    const now = this.clock.now();
    // First one wins: a later one for the same key replaces nothing.
    if (this.get(key)) return;
    this.map.set(key, {
      endpoint: { address: normalizeAddress(endpoint.address), port: endpoint.port },
      expiresAtMs: now + COMPANION_TTL_MS,
    });
    for (const [k, v] of this.map) {
      if (this.map.size <= COMPANIONS_MAX && v.expiresAtMs > now) break;
      this.map.delete(k);
    }
  }
  get(key: string): Endpoint | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    if (e.expiresAtMs <= this.clock.now()) {
      this.map.delete(key);
      return undefined;
    }
    return e.endpoint;
  }
  get size(): number {
    return this.map.size;
  }
}

export function createCompanions(clock: Clock): Companions {
  const clients = new BoundedStore(clock);
  const devices = new BoundedStore(clock);
  return {
    client: (nonce, seen) => clients.put(nonce.toString('hex'), seen),
    device: (requestId, seen) => devices.put(requestId.toString('hex'), seen),
    clientFor(sealedRequest, main) {
      const nonce = offeredClientNonce(sealedRequest);
      if (nonce === undefined) return undefined;
      return crossFamily(main, clients.get(nonce.toString('hex')));
    },
    deviceFor: (requestId, main) => crossFamily(main, devices.get(requestId.toString('hex'))),
    get size() {
      return clients.size + devices.size;
    },
  };
}
