/**
 * The device's side of a request at the server: the proof that a TLS connection is the notified
 * device's (bound to that TLS session), where that connection comes from (its NAT mapping, a hole
 * punch candidate), and the exchange itself: hand the device the sealed request (S206) and take
 * its verdict with the addresses it listens on (S207). Used for a device attached here, whether
 * this node or another one holds the client (node-routing.ts).
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { isPeerlinkError } from '../common/errors.js';
import { normalizeAddress, type Endpoint } from '../protocol/address.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import { CANDIDATES_MAX, CandidateKind, FrameType, type Candidate, type Frame } from '../protocol/frames.js';
import { ATTACH_EXPORTER_LABEL, attachProof, equalBytes, KEY_BYTES, registrationKeyDeriver } from '../protocol/keys.js';
import { Status, type StatusValue } from '../protocol/status.js';
import { checkListenCandidates } from './candidate-check.js';
import { clientLanForDevice, deviceLanForClient } from './lan-match.js';
import type { Companions } from './companions.js';

/** The identity a device attached with (its connection may be kept after the verdict, kept-devices.ts). */
export type AttachedDevice = { readonly equipmentId: string; readonly generation?: number };

/** With an ok verdict, the device's path candidates for the client (hole punch, reverse port). */
export type Verdict = {
  readonly status: StatusValue;
  readonly detail?: string;
  readonly candidates?: readonly Candidate[];
  /** The device's relay plan (RELAY_PLAN): it joins the relay this long after its verdict; absent: it did not say. */
  readonly relayInMs?: number;
};

export interface DeviceExchange {
  /** The device's proof for a request, bound to this TLS session (attach and relay join). */
  /** `name`: the identity name the device attached with (identity-name.ts: the ID, or ID@generation). */
  proofValid(socket: TLSSocket, name: string, requestId: Buffer, proof: Buffer): boolean;
  /** Note where the device's TLS connection comes from, for the exchange's candidates, and whose it is. */
  deviceAttached(channel: FrameChannel, socket: TLSSocket, device?: AttachedDevice): void;
  exchange(
    device: FrameChannel,
    requestId: Buffer,
    clientEndpoint: Endpoint,
    advertisedPort: number,
    sealedRequest: Buffer,
    log: Logger,
  ): Promise<Verdict>;
}

export function createDeviceExchange(o: {
  readonly masterKey: Buffer;
  readonly attachTimeoutMs: number;
  /** Companion connections (companions.ts): each side's endpoint of the other family, when it has one. */
  readonly companions?: Companions;
  /** After a verdict: the device's connection, to keep if it asks (kept-devices.ts); default: closed. */
  readonly keep?: (channel: FrameChannel, device: AttachedDevice) => void;
}): DeviceExchange {
  /** Where each attached device's TLS connection comes from (its NAT mapping for a hole punch). */
  const deviceSeenAt = new WeakMap<FrameChannel, Endpoint>();
  const attachedAs = new WeakMap<FrameChannel, AttachedDevice>();

  /** S206/S207 with an attached device: hand it the request, return its verdict. */
  async function exchange(
    device: FrameChannel,
    requestId: Buffer,
    clientEndpoint: { address: string; port: number },
    advertisedPort: number,
    sealedRequest: Buffer,
    log: Logger,
  ): Promise<Verdict> {
    const deviceEndpoint = deviceSeenAt.get(device);
    // The client's companion of the other family (companions.ts), as observed: a second PUNCH, last.
    const clientOther = o.companions?.clientFor(sealedRequest, clientEndpoint);
    // Where the client's request came from: the device may punch towards it from its own attach port.
    // Both frames in one write (one TLS record, one segment).
    device.sendAll([
      {
        type: FrameType.CANDIDATES,
        candidates: [
          { kind: CandidateKind.PUNCH, endpoint: clientEndpoint },
          ...(deviceEndpoint ? [{ kind: CandidateKind.OBSERVED, endpoint: deviceEndpoint }] : []),
          // Only when both are seen at one public address (lan-match.ts).
          ...clientLanForDevice(sealedRequest, clientEndpoint, deviceEndpoint),
          ...(clientOther ? [{ kind: CandidateKind.PUNCH, endpoint: clientOther }] : []),
        ],
      },
      { type: FrameType.FORWARD_REQUEST, requestId, client: clientEndpoint, advertisedPort, sealedRequest },
    ]);
    let verdict: Frame;
    const listen: Candidate[] = [];
    const lan: Candidate[] = [];
    const offeredListen: Candidate[] = [];
    let relayInMs: number | undefined;
    // One deadline for the whole exchange, from its start: frames the device sends meanwhile
    // (CANDIDATES) do not extend it, or a device could hold the request open for ever.
    const deadlineMs = performance.now() + o.attachTimeoutMs;
    const left = (): number => Math.max(0, deadlineMs - performance.now());
    try {
      verdict = await device.next(left());
      // Its candidates, and (a device that knows relay plans, once) when it will join the relay.
      while (
        (verdict.type === FrameType.CANDIDATES && listen.length < CANDIDATES_MAX) ||
        (verdict.type === FrameType.RELAY_PLAN && relayInMs === undefined && equalBytes(verdict.requestId, requestId))
      ) {
        if (verdict.type === FrameType.RELAY_PLAN) relayInMs = verdict.relayInMs;
        else {
          listen.push(...checkListenCandidates(verdict.candidates, deviceEndpoint));
          offeredListen.push(...verdict.candidates.slice(0, CANDIDATES_MAX - offeredListen.length));
          if (lan.length === 0) lan.push(...deviceLanForClient(verdict.candidates, clientEndpoint, deviceEndpoint));
        }
        verdict = await device.next(left());
      }
    } catch (err) {
      log.info({ err: isPeerlinkError(err) ? err.code : String(err) }, 'device gave no verdict');
      device.close();
      return { status: Status.DEVICE_NO_ANSWER };
    }
    if (verdict.type !== FrameType.DEVICE_VERDICT || !equalBytes(verdict.requestId, requestId)) {
      device.close();
      return { status: Status.INTERNAL, detail: 'the device answered out of turn' };
    }
    const as = attachedAs.get(device);
    if (o.keep && as) o.keep(device, as);
    else device.close();
    if (verdict.status !== Status.OK) return { status: verdict.status };
    // The device's companion of the other family: a PUNCH there, and its open ports on that address
    // ("where you see me from", checked as for the attach's address).
    const deviceOther = o.companions?.deviceFor(requestId, deviceEndpoint);
    const other = deviceOther ? checkListenCandidates(offeredListen, deviceOther) : [];
    return {
      status: verdict.status,
      ...(relayInMs !== undefined ? { relayInMs } : {}),
      candidates: [
        ...lan,
        ...(deviceEndpoint ? [{ kind: CandidateKind.PUNCH, endpoint: deviceEndpoint }] : []),
        ...(deviceOther ? [{ kind: CandidateKind.PUNCH, endpoint: deviceOther }] : []),
        ...listen,
        ...other,
      ].slice(0, CANDIDATES_MAX),
    };
  }

  // The master key's block compressed once, not on every attach (keys.ts).
  const registrationKey = registrationKeyDeriver(o.masterKey);

  return {
    proofValid(socket, name, requestId, proof) {
      const key = registrationKey(name);
      const exporter = socket.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
      return equalBytes(attachProof(key, requestId, exporter), proof);
    },
    deviceAttached(channel, socket, device) {
      deviceSeenAt.set(channel, { address: normalizeAddress(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 });
      if (device) attachedAs.set(channel, device);
    },
    exchange,
  };
}
