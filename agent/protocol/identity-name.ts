/**
 * Identity generations (issue 19): the name a device's identity goes by towards the server. A
 * device provisioned again under the same equipment ID (new keys, e.g. after its identity file
 * leaked) gets a new generation; the operator can then deny the old generation alone.
 *
 *   generation 0 (every identity made before generations, and the default): the equipment ID
 *   generation g in 1..MAX_IDENTITY_GENERATION: "<equipment ID>@<g>"  (decimal, no leading zero)
 *
 * The registration key is derived from this name (keys.ts: BLAKE2s(master key, label || name)),
 * so generation 0 keeps exactly today's K_reg, and a leaked file of one generation gives no key of
 * another: the server tells generations apart by the key that verifies, never by trust. The name
 * travels where the device names itself to the server (REGISTER, PROBE, REFUSE, DEVICE_ATTACH,
 * RELAY_JOIN_DEVICE); clients, the wake, the sealed request and every end-to-end key use the
 * equipment ID alone, so a client never needs to know the generation.
 */
export const MAX_IDENTITY_GENERATION = 255;
/** An equipment ID (64) and "@255". */
export const IDENTITY_NAME_MAX_BYTES = 68;
/** An equipment ID, optionally "@" and a generation 1-255. */
export const IDENTITY_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}(?:@(?:[1-9]|[1-9]\d|1\d\d|2[0-4]\d|25[0-5]))?$/;

export interface IdentityName {
  readonly equipmentId: string;
  /** 0: the first (or only) generation, named by the equipment ID alone. */
  readonly generation: number;
}

export function isGeneration(g: unknown): g is number {
  return typeof g === 'number' && Number.isInteger(g) && g >= 0 && g <= MAX_IDENTITY_GENERATION;
}

/** The name of generation `generation` of `equipmentId` (the ID alone for generation 0). */
export function identityName(equipmentId: string, generation = 0): string {
  if (!isGeneration(generation)) throw new RangeError(`generation must be an integer 0-${MAX_IDENTITY_GENERATION}, found ${generation}`);
  return generation === 0 ? equipmentId : `${equipmentId}@${generation}`;
}

/**
 * Split a name read from the wire, already matched against IDENTITY_NAME_PATTERN (so both parts
 * are valid; no second regex on the registration hot path).
 */
export function splitIdentityName(name: string): IdentityName {
  const at = name.indexOf('@');
  return at < 0 ? { equipmentId: name, generation: 0 } : { equipmentId: name.slice(0, at), generation: Number(name.slice(at + 1)) };
}
