/**
 * A device's mapping per address family (issue 14). A dual-stack device registers over IPv4 and
 * over IPv6, and each is a mapping the server keeps: the IPv4 one under the equipment ID (exactly
 * the key it always had, in the memory registry and in Redis), the IPv6 one under the ID with the
 * suffix "/6", which no equipment ID can carry (EQUIPMENT_ID_PATTERN has no "/"). Each family thus
 * has its own registration timestamps, cookie, replay check, write-on-change and holding node, with
 * the registry's machinery unchanged, and an IPv4-only fleet costs nothing more. A node that does
 * not know the suffix never reads the IPv6 key (agent/protocol/README.md).
 */
import { isIPv6 } from 'node:net';
import { normalizeAddress } from '../protocol/address.js';
import type { MaybePromise, RegistryEntry } from './registry.js';

export const IPV6_KEY_SUFFIX = '/6';

/** An equipment ID, or one with the IPv6 suffix: what a registry key (and a `taken` message) may be. */
export const REGISTRY_KEY_PATTERN = /^[A-Za-z0-9._-]{1,64}(?:\/6)?$/;

export function ipv6Key(equipmentId: string): string {
  return equipmentId + IPV6_KEY_SUFFIX;
}

/** The registry key of `equipmentId`'s mapping at `address` (as observed): by its family. */
export function mappingKey(equipmentId: string, address: string): string {
  // No ':' : IPv4, the common case on every registration's path.
  return address.indexOf(':') >= 0 && isIPv6(normalizeAddress(address)) ? ipv6Key(equipmentId) : equipmentId;
}

/** The device's mappings, IPv4 first; either may be absent. */
export interface DeviceMappings {
  readonly v4: RegistryEntry | undefined;
  readonly v6: RegistryEntry | undefined;
}

/** Both of a device's mappings from one registry (the two lookups at once). */
export async function lookupMappings(
  lookup: (key: string) => MaybePromise<RegistryEntry | undefined>,
  equipmentId: string,
): Promise<DeviceMappings> {
  const [v4, v6] = await Promise.all([lookup(equipmentId), lookup(ipv6Key(equipmentId))]);
  return { v4, v6 };
}
