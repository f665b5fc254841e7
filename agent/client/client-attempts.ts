/**
 * The client's side of the path race (agent/paths/path-race.ts): from the server's answer, the
 * attempts it runs at once (the device's dial S208, a hole punch per family, dials to the device's
 * open ports, the relay, deferred to the device's plan), and how the winning path is described.
 */
import type { TLSSocket } from 'node:tls';
import { isIPv6 } from 'node:net';
import type { Logger } from 'pino';
import { CandidateKind, type Candidate } from '../protocol/frames.js';
import { reverseToken } from '../protocol/keys.js';
import { formatEndpoint, normalizeAddress, type Endpoint } from '../protocol/address.js';
import { awaitChosen } from '../protocol/tunnel-choice.js';
import { punchTcp } from '../nat/tcp-punch.js';
import type { PortMapping } from '../nat/port-mapping.js';
import type { PathAttempt, PathKind } from '../paths/path-race.js';
import { acceptTunnel } from './tunnel-server.js';
import { dialDevice } from './device-dial.js';
import { relayTunnel } from './relay-tunnel.js';
import type { DeferredRelay } from './relay-plan.js';

/** What the attempts need of the client. */
export interface AttemptContext {
  readonly server: { readonly host: string; readonly port: number };
  readonly serverName: string;
  readonly caPem: string;
  readonly peerTimeoutMs: number;
  readonly logger: Logger;
  /** Our router's mapping of the accept port, if any. */
  readonly mapping: PortMapping | null;
}

export const familyOf = (address: string): 4 | 6 => (isIPv6(normalizeAddress(address)) ? 6 : 4);

/** What the device's channel must prove (the peer listener's and tunnel server's expectation). */
export interface Expected {
  readonly clientNonce: Buffer;
  readonly accessKey: Buffer;
  readonly equipmentId: string;
  readonly service: string;
}

export interface RelayOfferFrame {
  readonly requestId: Buffer;
  readonly joinToken: Buffer;
}

/** The server's answer to an accepted request. */
export interface ServerAnswer {
  readonly detail: string;
  readonly relayOffer: RelayOfferFrame | null;
  /** The offer is joined only when the device's plan says (null: at once, as with an older server or device). */
  readonly relayDeferred: DeferredRelay | null;
  /** Our address on the request connection, and the path hints the request carried. */
  readonly localAddress: string;
  readonly hints: number;
  readonly candidates: readonly Candidate[];
  /** The local port of the request's connection (a hole punch leaves from it). */
  readonly requestLocalPort: number;
  /** The family the request's connection used, and our companion's endpoint of the other (if any). */
  readonly requestFamily: 4 | 6;
  readonly companionLocal: Endpoint | null;
  /** Our LAN candidate as sealed in the request, and the device's LAN candidate we may dial. */
  readonly lanOffer: readonly Endpoint[];
  readonly lanTargets: readonly Endpoint[];
}

export interface ClientAttempt extends PathAttempt<TLSSocket> {
  readonly to: Endpoint | null;
}

/** Why no direct path came up, for people: the attempts that failed, and the one that never came. */
function relayReason(failures: readonly string[], advertisedPort: number, me: string): string {
  const parts = [
    `the device's dial to ${me}:${advertisedPort} did not arrive`,
    ...failures.filter((f) => !f.startsWith('device dial') && !f.startsWith('relay')),
  ];
  return parts.join('; ');
}

/**
 * The client's attempts in the path race (path-race.ts), all at once: the device may dial us
 * (S208), we punch or dial its open ports, and the relay. The device keeps the first end-to-end
 * channel and says which (the chosen byte), so both ends keep the same one.
 */
export function clientAttempts(o: AttemptContext, peer: Promise<TLSSocket>, answer: ServerAnswer, expected: Expected): ClientAttempt[] {
  const { candidates, relayOffer, requestLocalPort, requestFamily, companionLocal, lanTargets } = answer;
  // One punch per family: from the request's port, or the companion's for the other family.
  const punches = candidates
    .filter((c) => c.kind === CandidateKind.PUNCH)
    .map((c) => {
      const family = familyOf(c.endpoint.address);
      const localPort =
        family === requestFamily
          ? requestLocalPort
          : companionLocal && familyOf(companionLocal.address) === family
            ? companionLocal.port
            : 0;
      return { to: c.endpoint, localPort };
    })
    .filter((p, i, all) => p.localPort !== 0 && all.findIndex((q) => familyOf(q.to.address) === familyOf(p.to.address)) === i);
  const punch = punches[0]?.to;
  // The device's LAN address first: dialled like its open port, with the same token.
  const listen = [...lanTargets, ...candidates.filter((c) => c.kind === CandidateKind.LISTEN).map((c) => c.endpoint)];
  o.logger.info(
    {
      punch: punch ? formatEndpoint(punch) : null,
      punches: punches.map((p) => formatEndpoint(p.to)),
      deviceListens: listen.map(formatEndpoint),
      relay: relayOffer !== null,
    },
    'S207 device accepted the request; waiting for its direct connection (S208) and trying the other paths',
  );
  const chosen =
    (signal: AbortSignal) =>
    (s: TLSSocket): Promise<TLSSocket> =>
      awaitChosen(s, o.peerTimeoutMs, signal);
  const attempts: ClientAttempt[] = [{ via: 'dial', label: 'device dial', to: null, start: (signal) => peer.then(chosen(signal)) }];
  for (const p of punches) {
    attempts.push({
      via: 'punch',
      label: punches.length > 1 ? `hole punch to ${formatEndpoint(p.to)}` : 'hole punch',
      to: p.to,
      start: (signal) =>
        punchTcp({ localPort: p.localPort, remote: p.to, timeoutMs: o.peerTimeoutMs, signal })
          .then((sock) => acceptTunnel(sock, expected, o.peerTimeoutMs, signal, 'over the punched connection'))
          .then(chosen(signal)),
    });
  }
  const token = reverseToken(expected.accessKey, expected.clientNonce);
  for (const ep of listen) {
    attempts.push({
      via: 'reverse',
      label: `dial to the device's ${formatEndpoint(ep)}`,
      to: ep,
      start: (signal) =>
        dialDevice(ep, token, o.peerTimeoutMs, signal)
          .then((sock) => acceptTunnel(sock, expected, o.peerTimeoutMs, signal, `with ${formatEndpoint(ep)}`))
          .then(chosen(signal)),
    });
  }
  if (relayOffer) {
    const server = { host: o.server.host, port: o.server.port, serverName: o.serverName, caPem: o.caPem };
    // Told when the device joins (its RELAY_PLAN), we join just before then (or when the server says
    // it is waiting), not at once: a request whose direct path wins first costs the server no relay
    // leg (relay-plan.ts). Without a plan: at once, as before.
    const deferred = answer.relayDeferred;
    attempts.push({
      via: 'relay',
      to: null,
      start: (signal) =>
        (deferred ? deferred.due(signal) : Promise.resolve())
          .then(() => relayTunnel(server, relayOffer.requestId, relayOffer.joinToken, expected, o.peerTimeoutMs, signal))
          .then(chosen(signal)),
    });
  }
  return attempts;
}

/** How the connection was made, for people. */
export function describePath(
  o: AttemptContext,
  via: PathKind,
  to: Endpoint | null,
  seenAs: Endpoint | undefined,
  advertisedPort: number,
  failures: readonly string[],
  local?: Endpoint,
): string {
  const me = seenAs ? seenAs.address : 'our address';
  if (via === 'dial') {
    // The device dialled our address of the other family (our companion's, at the accept port).
    if (local && seenAs && familyOf(local.address) !== familyOf(seenAs.address))
      return `connected directly: device dialled ${formatEndpoint(local)}`;
    return `connected directly: device dialled ${o.mapping ? `${o.mapping.externalHost}:${o.mapping.externalPort} (our router's mapping)` : seenAs ? formatEndpoint({ address: seenAs.address, port: advertisedPort }) : `${me}:${advertisedPort}`}`;
  }
  if (via === 'punch') {
    // Over the companion's family the server's OBSERVED (the request's) is of the other family.
    const from = seenAs && familyOf(seenAs.address) === familyOf(to!.address) ? formatEndpoint(seenAs) : local ? formatEndpoint(local) : me;
    return `connected directly: TCP hole punch between ${from} and the device's ${formatEndpoint(to!)}`;
  }
  if (via === 'reverse') return `connected directly: we dialled the device's open port ${formatEndpoint(to!)}`;
  return `relayed via server: direct attempts failed (${relayReason(failures, advertisedPort, me)}); end-to-end encrypted, the server sees ciphertext only`;
}
