/**
 * When the relay need not wait (issue 15). The device starts the relay `relay_after_ms` after its
 * verdict so that the direct paths have their head start. Where what both sides know of their NATs
 * already rules every direct path out, that head start is only waiting: the relay starts at once.
 *
 * The direct paths and what each needs (docs/paths.md):
 *   device dials the client (S208)  the client takes inbound connections (public, or a port mapping)
 *   client dials the device         the device offered a LISTEN endpoint (public, or a port mapping)
 *   hole punch                      both NATs map endpoint-independently
 *   LAN candidate                   one home (the server vouched)
 *
 * So the relay starts at once when the device has no LAN dial and no LISTEN endpoint to offer, and
 * either the client says it takes no inbound connection and one of the two NATs maps
 * address-and-port-dependently (symmetric: the device's as it learnt it, or the client's as the
 * client learnt it, nat/client-mapping.ts; a punch through either cannot meet), or the client says
 * every direct path to this device failed last time from where it is now (path-memory.ts).
 *
 * The client's hints travel in its sealed request (agent/protocol/request.ts): the server can
 * neither add nor remove one. A false hint only makes that client's own connection relayed, which
 * counts against its relay share like any other (P14).
 */

/** The client's side of the hints, bit flags in the sealed request. */
export const PathHint = {
  /** No port mapping, no advertised port, and a home LAN local address (nat/lan-address.ts): the device's dial cannot arrive. */
  NO_INBOUND: 1,
  /** Every direct attempt to this device failed the last time, from the same local address (path-memory.ts). */
  DIRECT_FAILED_BEFORE: 2,
  /**
   * The client's NAT maps per destination: the server's two UDP ports saw two external ports
   * (nat/client-mapping.ts), and it has no global IPv6 address a punch could use instead.
   */
  SYMMETRIC_MAPPING: 4,
} as const;

/** What the device learnt of its own NAT's mapping (nat/mapping-behaviour.ts); unknown without the server's probe port. */
export type MappingBehaviour = 'endpoint-independent' | 'symmetric' | 'public' | 'unknown';

export interface RelayAtOnceInput {
  /** The client's hints from its sealed request (0: none). */
  readonly hints: number;
  /** The device offered LISTEN endpoints (its reverse port is reachable from outside). */
  readonly deviceListens: boolean;
  /** The device dials the client's LAN candidate. */
  readonly lanDial: boolean;
  readonly deviceMapping: MappingBehaviour;
}

/**
 * Whether these client hints may have started the relay at once (the device decides with what it
 * knows): a relay win then says nothing new of the direct paths (path-memory.ts `rushed`).
 */
export function hintsMayRush(hints: number): boolean {
  const noInboundSymmetric = PathHint.NO_INBOUND | PathHint.SYMMETRIC_MAPPING;
  return (hints & PathHint.DIRECT_FAILED_BEFORE) !== 0 || (hints & noInboundSymmetric) === noInboundSymmetric;
}

/** Why the relay starts at once, or null when the direct paths keep their head start. */
export function relayAtOnceReason(i: RelayAtOnceInput): string | null {
  if (i.lanDial || i.deviceListens) return null;
  if (i.hints & PathHint.DIRECT_FAILED_BEFORE) return 'the client says every direct path to this device failed last time';
  if (i.hints & PathHint.NO_INBOUND && i.deviceMapping === 'symmetric')
    return "the client takes no inbound connection and this device's NAT maps per destination (symmetric): no dial or punch can meet";
  if (i.hints & PathHint.NO_INBOUND && i.hints & PathHint.SYMMETRIC_MAPPING)
    return 'the client takes no inbound connection and its NAT maps per destination (symmetric): no dial or punch can meet';
  return null;
}
