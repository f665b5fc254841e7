/**
 * Where the device punches (issue 14, cross-family candidates), and from which local port: the
 * client's observed endpoint (its address is the one the dial policy approved) and its companion of
 * the other family (agent/server/companions.ts), which must pass the same policy (P3: an Internet
 * server cannot aim the device at its LAN through it). Each leaves from our own connection to the
 * server of that family, the attach or our companion, whose port the server passed to the client;
 * a family we have no connection of is skipped.
 */
import { isIPv6 } from 'node:net';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import { CandidateKind, type Candidate } from '../protocol/frames.js';
import { mayDial, type DialPolicy } from './address-policy.js';

export const familyOf = (address: string): 4 | 6 => (isIPv6(normalizeAddress(address)) ? 6 : 4);

/**
 * Where to punch, and from which local port: the client's observed endpoint (the dial policy
 * approved its address) and its companion of the other family (checked by the same policy, P3),
 * each from our connection to the server of that family, the attach or our companion; a family
 * we have no connection of is skipped (its port would be unknown to the client).
 */
export function punchTargets(
  told: readonly Candidate[],
  dial: Endpoint,
  own: { attachLocalPort: number; attachRemote: string; companionLocal: Endpoint | null },
  /** The dial settings; null: none given (only the observed address is punched); undefined: punching is off. */
  policy: (() => DialPolicy) | null | undefined,
): { localPort: number; remote: Endpoint }[] {
  if (policy === undefined) return [];
  const portFor = (family: 4 | 6): number =>
    own.attachLocalPort && familyOf(own.attachRemote) === family
      ? own.attachLocalPort
      : own.companionLocal && familyOf(own.companionLocal.address) === family
        ? own.companionLocal.port
        : 0;
  const out: { localPort: number; remote: Endpoint }[] = [];
  for (const c of told) {
    if (c.kind !== CandidateKind.PUNCH) continue;
    const family = familyOf(c.endpoint.address);
    if (out.some((o) => familyOf(o.remote.address) === family)) continue;
    const approved = c.endpoint.address === dial.address || (!!policy && mayDial(c.endpoint.address, policy(), own.attachRemote));
    const localPort = portFor(family);
    if (approved && localPort) out.push({ localPort, remote: c.endpoint });
  }
  return out;
}
