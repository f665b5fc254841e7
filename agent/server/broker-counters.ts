/** The connection broker's counters (connection-broker.ts and its steps), as the metrics name them. */
export const BROKER_COUNTERS = [
  'requests',
  /** The device refused the request's wake proof (P9). */
  'refusedWake',
  'rateLimitedAuthFailures',
  'connected',
  'unknownDevice',
  'staleDevice',
  'noAnswer',
  'refusedByDevice',
  'busy',
  'attachRejected',
  'badFirstFrame',
  'handshakeFailed',
  'handshakeTimeout',
  'unidentifiedOverCap',
  'rateLimitedSource',
  'rateLimitedTarget',
  'registryUnavailable',
  'nodeUnavailable',
  'shuttingDown',
  'routedToNode',
  'notifiedForNode',
  'attachedForNode',
  /** Requests for a device on the operator's deny list (issue 19). */
  'denied',
  /** Plain relay legs (relay-leg.ts, issue 15) that proved their key, and those refused. */
  'relayLegs',
  'relayLegsRefused',
  /**
   * Relay joins a client started (a plain leg's HELLO, or RELAY_JOIN_CLIENT over TLS), whatever came
   * of them: with relay plans, none for a request whose direct path wins before the device's join.
   */
  'relayClientJoins',
  /** TLS handshakes on the listener: full, or resumed from a ticket (server-tls.ts on the other end). */
  'tlsFull',
  'tlsResumed',
  /** New TLS connections whose first frame is DEVICE_ATTACH (a device's attach handshakes). */
  'deviceAttachConnections',
  /** Kept device connections (kept-devices.ts): kept after a verdict, refused at the cap, closed idle, woken over. */
  'kept',
  'keptOverCap',
  'keptIdleClosed',
  'keptWakes',
  /** Client connections (first frame CONNECT_REQUEST); requests on one after its first; those closed idle (client-connection.ts). */
  'clientConnections',
  'keptClientRequests',
  'keptClientIdleClosed',
] as const;
export type BrokerCounter = (typeof BROKER_COUNTERS)[number];
