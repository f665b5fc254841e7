/**
 * The broker's traffic between server nodes (Redis pub/sub, see redis-registry.ts and docs/fleet.md's
 * "Several server nodes"):
 *  - a node asked to notify a device registered with it sends the notification (S205) to the
 *    device's mapping in its own list, never to an address a message names;
 *  - the node holding a client waits for "attached" and "verdict" messages about its request;
 *  - a device that attaches here for a request held by another node (or waiting in Redis) gets the
 *    request forwarded (S206), and its verdict (S207) goes back to the node holding the client.
 */
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Counters } from '../common/counters.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import type { Frame, FrameType } from '../protocol/frames.js';
import { Status } from '../protocol/status.js';
import type { RefuseReasonValue } from '../protocol/udp-packets.js';
import type { BrokerCounter } from './broker-counters.js';
import type { Verdict } from './device-exchange.js';
import type { NodeMessage, RequestMessage } from './node-messages.js';
import type { RedisRegistry } from './redis-registry.js';
import type { RegistrationEndpoint } from './registration-endpoint.js';
import type { Registry } from './registry.js';
import { ipv6Key } from './family-key.js';

/** Requests of other nodes this node notified for, remembered to log the first notification only. */
const NOTIFIED_REMEMBERED = 10_000;

type DeviceAttach = Extract<Frame, { type: typeof FrameType.DEVICE_ATTACH }>;

export interface NodeRoutingOptions {
  readonly cluster: RedisRegistry;
  readonly registry: Registry;
  readonly udp: RegistrationEndpoint;
  readonly counters: Counters<BrokerCounter>;
  readonly logger: Logger;
  /** The device's proof for the request, bound to its TLS session (the broker's check). */
  readonly proofValid: (socket: TLSSocket, attach: DeviceAttach) => boolean;
  /** Note where the device's TLS connection comes from (its NAT mapping, for a hole punch). */
  readonly deviceAttached: (channel: FrameChannel, socket: TLSSocket) => void;
  /** S206/S207 with the attached device: hand it the request, return its verdict. */
  readonly exchange: (
    device: FrameChannel,
    requestId: Buffer,
    client: { address: string; port: number },
    advertisedPort: number,
    sealedRequest: Buffer,
    log: Logger,
  ) => Promise<Verdict>;
  readonly onTiming?: (what: 'notifyRoundTrip', ms: number, status: typeof Status.OK) => void;
  /** The device's ok verdict for `hex` goes to the client's node now (its relay join may come here next). */
  readonly okVerdict?: (hex: string, equipmentId: string) => void;
}

export interface NodeRouting {
  /** Messages about request `hex` (from the node the device attached at) go to `onMessage`. */
  waitFor(hex: string, onMessage: (m: RequestMessage) => void): void;
  stopWaiting(hex: string): void;
  /** The device attached here for a request this node does not hold. */
  serveAttach(channel: FrameChannel, socket: TLSSocket, attach: DeviceAttach): Promise<void>;
  /** The device refused a request this node notified it for on another node's behalf: tell that node (P9). */
  refused(hex: string, reason: RefuseReasonValue): boolean;
}

export function createNodeRouting(o: NodeRoutingOptions): NodeRouting {
  const { cluster, counters, logger } = o;
  const waiters = new Map<string, (m: RequestMessage) => void>();
  /** Requests this node notified a device for, and the node holding each (for a refusal, P9). */
  const notifiedFor = new Map<string, string>();

  cluster.onMessage((m) => {
    if (m.kind === 'taken') {
      // Another node holds the device now (newer registration): forget it here, so this node
      // writes it again, rather than skipping an unchanged entry, should it come back (write on change).
      const mine = o.registry.get(m.equipmentId);
      if (mine && mine.lastTimestampMs < m.timestampMs) {
        o.registry.delete(m.equipmentId);
        logger.info({ equipmentId: m.equipmentId, by: m.byNode }, 'device taken over by another node; forgotten here');
      }
      return;
    }
    if (m.kind !== 'notify') {
      waiters.get(m.requestId)?.(m);
      return;
    }
    // A node holding a client asks this one (the device's) to wake the device through its NAT.
    // The address is this node's own entry for the device, not one a message names: nothing that
    // can write to Redis can make a node send datagrams to an arbitrary address.
    const requestId = m.requestId.slice(0, 12);
    // Either family's mapping (family-key.ts): a dual-stack device may have registered each at another node.
    if (!o.registry.get(m.equipmentId) && !o.registry.get(ipv6Key(m.equipmentId))) {
      logger.debug({ requestId, equipmentId: m.equipmentId }, 'asked to notify a device not registered at this node');
      return;
    }
    if (o.udp.notify(m.equipmentId, Buffer.from(m.requestId, 'hex'), m.wake)) counters.inc('notifiedForNode');
    if (!notifiedFor.has(m.requestId)) {
      notifiedFor.set(m.requestId, m.fromNode);
      if (notifiedFor.size > NOTIFIED_REMEMBERED) notifiedFor.delete(notifiedFor.keys().next().value as string);
      logger.info({ requestId, equipmentId: m.equipmentId, for: m.fromNode }, 'S205 notification sent for a request held by another node');
    }
  });

  async function serveAttach(channel: FrameChannel, socket: TLSSocket, attach: DeviceAttach): Promise<void> {
    const hex = attach.requestId.toString('hex');
    const log = logger.child({ requestId: hex.slice(0, 12), equipmentId: attach.equipmentId });
    const reject = (why: string): void => {
      counters.inc('attachRejected');
      log.info(why);
      socket.destroy();
    };
    let rec;
    try {
      rec = await cluster.getPending(hex);
    } catch {
      return reject('device attach rejected: Redis unreachable, the request cannot be found');
    }
    if (!rec || rec.equipmentId !== attach.equipmentId || !o.proofValid(socket, attach)) {
      return reject('device attach rejected (unknown request or bad proof)');
    }
    // Exactly one node serves the attach (a device could attach twice, at two nodes).
    if (!(await cluster.claimPending(hex).catch(() => false))) return reject('device attach rejected (request already taken)');
    counters.inc('attachedForNode');
    o.onTiming?.('notifyRoundTrip', Date.now() - rec.notifiedAtMs, Status.OK);
    const { clientNode } = rec;
    const tell = (m: NodeMessage): Promise<unknown> =>
      cluster
        .send(clientNode, m)
        .catch((err: Error) => log.warn({ err: err.message, clientNode }, 'could not tell the node holding the client'));
    await tell({ kind: 'attached', requestId: hex, byNode: cluster.nodeId });
    log.info({ clientNode }, 'S206 device connected over TLS for a request held by another node; forwarding the request');
    o.deviceAttached(channel, socket);
    const v = await o.exchange(
      channel,
      attach.requestId,
      { address: rec.clientAddress, port: rec.clientPort },
      rec.advertisedPort,
      rec.sealedRequest,
      log,
    );
    // Before the verdict leaves: the device may join the relay here before its offer exists (relay-bridge.ts).
    if (v.status === Status.OK) o.okVerdict?.(hex, attach.equipmentId);
    await tell({ kind: 'verdict', requestId: hex, status: v.status, byNode: cluster.nodeId, candidates: v.candidates ?? [] });
    log.info({ status: v.status, clientNode }, 'S207 device verdict sent to the node holding the client');
  }

  return {
    waitFor: (hex, onMessage) => void waiters.set(hex, onMessage),
    stopWaiting: (hex) => void waiters.delete(hex),
    serveAttach,
    refused(hex, reason) {
      const holder = notifiedFor.get(hex);
      if (!holder) return false;
      notifiedFor.delete(hex);
      cluster
        .send(holder, { kind: 'refused', requestId: hex, byNode: cluster.nodeId, reason })
        .catch((err: Error) => logger.debug({ err: err.message }, 'routing a refusal failed'));
      return true;
    },
  };
}
