/** Wake proofs for specs that speak the protocol by hand (P9). */
import { randomBytes } from 'node:crypto';
import { MAC_BYTES, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { parseRequest } from '../../agent/protocol/request.js';
import { deriveWakeKey, makeWake, type Wake } from '../../agent/protocol/wake.js';

/** What someone without the password sends: well formed, with a tag that cannot verify. */
export function strangerWake(timestampMs = Date.now()): Wake {
  return { nonce: randomBytes(NONCE_BYTES), timestampMs, tag: randomBytes(MAC_BYTES) };
}

/** The wake a genuine client sends with `sealedRequest` (its nonce and timestamp), under `accessKey`. */
export function wakeFor(accessKey: Uint8Array, equipmentId: string, sealedRequest: Buffer): Wake {
  const { request } = parseRequest(sealedRequest);
  return makeWake(deriveWakeKey(accessKey), equipmentId, Buffer.from(request.clientNonce), request.timestampMs);
}
