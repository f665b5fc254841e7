/**
 * S207: decide whether a forwarded request may be served. The request must carry a valid tag
 * under the device's access key (the client knows the password), be addressed to this device
 * and the advertised port the server relayed, be fresh, be new, name an allowed service, and
 * the address to dial must be one the settings allow, given where the device reached the server
 * (P3, address-policy.ts). Only then does the device dial.
 */
import { mayDial, type DialPolicy } from './address-policy.js';
import type { HostPort } from '../common/endpoint-parse.js';
import type { Endpoint } from '../protocol/address.js';
import { deriveRequestTagKey } from '../protocol/keys.js';
import { parseRequest, verifyRequestTag, type ConnectRequest } from '../protocol/request.js';
import { Status, type StatusValue } from '../protocol/status.js';
import type { ReplayCache } from '../common/replay-cache.js';
import { OWNER_SERVICE } from '../protocol/pairing.js';

/** Where an OWNER_SERVICE request goes: not a socket, the agent's owner controls (owner-service.ts). */
export const OWNER_TARGET: HostPort = Object.freeze({ host: 'peerlink.owner', port: 0 });
import { isSessionService } from '../protocol/session-streams.js';

export interface AuthorizerOptions {
  readonly equipmentId: string;
  readonly accessKey: Buffer;
  readonly freshnessMs: number;
  readonly replayCache: ReplayCache;
  readonly services: () => ReadonlyMap<string, HostPort>;
  readonly dialPolicy: () => DialPolicy;
  /** Requests not newer than this were accepted before the agent restarted (replay-mark.ts). */
  readonly replayBarrierMs?: () => number;
}

export type Decision =
  /** target null: a session with streams (SESSION_SERVICE or MUX_SERVICE); each stream is authorised by name. */
  | { readonly status: typeof Status.OK; readonly request: ConnectRequest; readonly target: HostPort | null; readonly dial: Endpoint }
  | { readonly status: Exclude<StatusValue, typeof Status.OK>; readonly reason: string };

export interface Forwarded {
  readonly client: Endpoint;
  readonly advertisedPort: number;
  readonly sealedRequest: Buffer;
}

/**
 * `serverAddress`: the peer address of the TLS connection the request came over. `accessKey`: the
 * key whose wake proof verified (a paired client's, issue 19); default options.accessKey.
 */
export type Authorize = (fwd: Forwarded, serverNowMs: number, serverAddress: string, accessKey?: Buffer) => Decision;

export function createAuthorizer(options: AuthorizerOptions): Authorize {
  const tagKey = deriveRequestTagKey(options.accessKey);
  // The tag key of each access key in use (the password's, each paired client's): one HKDF per key, not per request.
  const tagKeys = new WeakMap<Buffer, Buffer>([[options.accessKey, tagKey]]);
  const tagKeyOf = (accessKey: Buffer): Buffer => {
    let k = tagKeys.get(accessKey);
    if (!k) tagKeys.set(accessKey, (k = deriveRequestTagKey(accessKey)));
    return k;
  };
  return (fwd, now, serverAddress, accessKey) => {
    let parsed;
    try {
      parsed = parseRequest(fwd.sealedRequest);
    } catch (err) {
      return { status: Status.BAD_REQUEST, reason: `malformed request: ${(err as Error).message}` };
    }
    if (!verifyRequestTag(parsed, accessKey ? tagKeyOf(accessKey) : tagKey))
      return { status: Status.AUTH_FAILED, reason: 'request tag does not verify (wrong password)' };
    const req = parsed.request;
    if (req.equipmentId !== options.equipmentId) return { status: Status.BAD_REQUEST, reason: `request is for ${req.equipmentId}` };
    if (req.advertisedPort !== fwd.advertisedPort) return { status: Status.BAD_REQUEST, reason: 'advertised port altered in transit' };
    const skew = req.timestampMs - now;
    if (Math.abs(skew) > options.freshnessMs) {
      return { status: Status.REQUEST_EXPIRED, reason: `request timestamp is ${Math.round(skew / 1000)} s from server time` };
    }
    // The server sets our idea of time: after a restart only the persisted mark stops a replay.
    if (req.timestampMs <= (options.replayBarrierMs?.() ?? 0)) {
      return { status: Status.REQUEST_REPLAYED, reason: 'request is not newer than one accepted before the agent restarted' };
    }
    const target = isSessionService(req.service)
      ? null
      : req.service === OWNER_SERVICE
        ? OWNER_TARGET
        : options.services().get(req.service);
    if (target === undefined) return { status: Status.SERVICE_REFUSED, reason: `service ${req.service} is not in the allow-list` };
    if (!mayDial(fwd.client.address, options.dialPolicy(), serverAddress)) {
      return {
        status: Status.DIAL_REFUSED,
        reason: `address ${fwd.client.address} is not allowed by dial settings (server at ${serverAddress})`,
      };
    }
    // Remembered last, so a refused request does not use up its nonce.
    const seen = options.replayCache.check(req.clientNonce, req.timestampMs + options.freshnessMs, now);
    if (seen === 'replayed') return { status: Status.REQUEST_REPLAYED, reason: 'nonce already used' };
    if (seen === 'full') return { status: Status.DEVICE_BUSY, reason: 'replay cache full' };
    return { status: Status.OK, request: req, target, dial: { address: fwd.client.address, port: fwd.advertisedPort } };
  };
}
