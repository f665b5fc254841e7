/**
 * Notify and attach (S205 to S206) for one client request: notify the device over UDP (packet 205,
 * repeated every notifyRetryMs so a lost datagram costs one retry, not the request), or have the
 * node holding it do so (pub/sub), and wait until the device attaches here or at another node,
 * refuses the wake proof (P9), its node is gone, the server shuts down, the client leaves or time
 * runs out. The request sits in the pending table meanwhile; whatever ends the wait removes it.
 */
import type { Logger } from 'pino';
import type { TLSSocket } from 'node:tls';
import type { Counters } from '../common/counters.js';
import type { FrameChannel } from '../protocol/frame-channel.js';
import type { Wake } from '../protocol/wake.js';
import type { RefuseReasonValue } from '../protocol/udp-packets.js';
import type { BrokerCounter } from './broker-counters.js';
import type { Verdict } from './device-exchange.js';
import type { NodeRouting } from './node-routing.js';
import type { PendingRequest, PendingRequests } from './pending-requests.js';
import type { RedisRegistry } from './redis-registry.js';
import type { RegistrationEndpoint } from './registration-endpoint.js';
import type { RegistryEntry } from './registry.js';
import type { KeptDevices } from './kept-devices.js';

/** How the wait for the device ended; null: no answer in time, or the client left. */
export type Attached =
  | { readonly kind: 'local'; readonly device: FrameChannel }
  | { readonly kind: 'remote'; readonly node: string }
  | { readonly kind: 'gone' }
  | { readonly kind: 'shutdown' }
  /** The device checked the wake proof and refused it (P9). */
  | { readonly kind: 'refused'; readonly reason: RefuseReasonValue }
  | null;

export interface DeviceWaitContext {
  readonly udp: RegistrationEndpoint;
  readonly pending: PendingRequests;
  readonly counters: Counters<BrokerCounter>;
  readonly cluster: RedisRegistry | undefined;
  readonly routing: NodeRouting | null;
  readonly notifyRetryMs: number;
  readonly attachTimeoutMs: number;
  /** Requests still waiting when the grace period ends: each answers when called. */
  readonly waitingForDevice: Set<() => void>;
  /** Kept device connections (kept-devices.ts): an idle one is woken instead of the first notification. */
  readonly kept?: Pick<KeptDevices, 'wake'>;
}

export interface DeviceWaitRequest {
  readonly requestId: Buffer;
  readonly hex: string;
  readonly equipmentId: string;
  readonly wake: Wake;
  /** The requester's limit key. */
  readonly source: string;
  readonly entry: RegistryEntry;
  /** The device's fresh mappings, one per family (family-key.ts); default: `entry` alone. */
  readonly mappings?: readonly RegistryEntry[];
  /** The node holding the device's mapping, when not this one. */
  readonly owner: string | null;
  readonly socket: TLSSocket;
  readonly log: Logger;
}

export interface DeviceWait {
  readonly attached: Promise<Attached>;
  /** The verdict, when the device attached at another node (which forwards it). */
  readonly remoteVerdict: Promise<Verdict>;
}

export function waitForDevice(ctx: DeviceWaitContext, r: DeviceWaitRequest): DeviceWait {
  let notifyTimer: NodeJS.Timeout | undefined;
  let deadline: NodeJS.Timeout | undefined;
  let entryInTable: PendingRequest | undefined;
  let onShutdown: (() => void) | undefined;
  let verdictFromNode: ((v: Verdict) => void) | undefined;
  let settled = false;
  const remoteVerdict = new Promise<Verdict>((resolve) => (verdictFromNode = resolve));
  const attached = new Promise<Attached>((resolve) => {
    const p = {
      requestId: r.requestId,
      equipmentId: r.equipmentId,
      source: r.source,
      attach: (ch: FrameChannel) => resolve({ kind: 'local', device: ch }),
      refused: (reason: RefuseReasonValue) => resolve({ kind: 'refused', reason }),
    };
    entryInTable = p;
    ctx.pending.add(p);
    if (ctx.routing) {
      ctx.routing.waitFor(r.hex, (m) => {
        // Decoded and checked at the boundary (node-messages.ts): reason, status and candidates are valid.
        if (m.kind === 'attached') resolve({ kind: 'remote', node: m.byNode });
        else if (m.kind === 'refused') resolve({ kind: 'refused', reason: m.reason });
        else if (m.kind === 'verdict') verdictFromNode?.({ status: m.status, candidates: [...m.candidates] });
      });
    }
    const sendNotify = notifier(ctx, r, () => resolve({ kind: 'gone' }));
    // The device's kept connection, if it has an idle one here: the wake goes over it, and the
    // notifications start only if it fails (at once) or after one retry interval (a connection
    // dead without our knowing); the device ignores a request it was woken for already.
    const overKept = ctx.kept?.wake(r.equipmentId, r.requestId, r.wake) ?? null;
    if (overKept) {
      r.log.info("S205 wake sent over the device's kept connection");
      void overKept.then((attached) => {
        if (!attached && !settled) sendNotify();
      });
    } else sendNotify();
    if (overKept) {
      // The notifications wait for the retry interval.
    } else if (r.owner) {
      ctx.counters.inc('routedToNode');
      r.log.info({ deviceNode: r.owner }, 'S205 request routed to the node holding the device, which notifies it');
    } else r.log.info('S205 notification sent to the device mapping');
    const other = (r.mappings ?? []).find(
      (m) => m !== r.entry && m.node && ctx.cluster && m.node !== ctx.cluster.nodeId && m.node !== r.owner,
    );
    if (other)
      r.log.info({ deviceNode: other.node }, "S205 the device's other address family is held by another node, which notifies it too");
    notifyTimer = setInterval(sendNotify, ctx.notifyRetryMs);
    deadline = setTimeout(() => resolve(null), ctx.attachTimeoutMs);
    r.socket.once('close', () => resolve(null));
    onShutdown = () => resolve({ kind: 'shutdown' });
    ctx.waitingForDevice.add(onShutdown);
  }).finally(() => {
    settled = true;
    clearInterval(notifyTimer);
    clearTimeout(deadline);
    if (onShutdown) ctx.waitingForDevice.delete(onShutdown);
    if (entryInTable) ctx.pending.remove(entryInTable);
  });
  return { attached, remoteVerdict };
}

/**
 * One notification: packet 205 to each of the device's mappings this node holds, and a message to
 * each other node holding one (the node holding the request's entry, and the one holding the other
 * family's mapping, issue 14): a dual-stack device whose IPv4 and IPv6 registrations went to two
 * nodes is woken over both, since its NAT or firewall lets in each family only from its own node.
 */
function notifier(ctx: DeviceWaitContext, r: DeviceWaitRequest, gone: () => void): () => void {
  // The first notification to arrive wins; the device ignores a request it has seen. Each is
  // tagged with the key of the identity generation that registered it.
  const here = ctx.cluster?.nodeId;
  const elsewhere = (m: RegistryEntry): boolean => !!ctx.cluster && !!m.node && m.node !== here;
  const all = r.mappings ?? [r.entry];
  const mine = all.filter((m) => !elsewhere(m) && !(r.owner && m === r.entry));
  const targets = mine.map((m) => ({ address: m.address, port: m.port, ...(m.generation ? { generation: m.generation } : {}) }));
  const nodes = [...new Set([...(r.owner ? [r.owner] : []), ...all.filter(elsewhere).map((m) => m.node!)])];
  return () => {
    let sent = 0;
    for (const target of targets) if (ctx.udp.notify(r.equipmentId, r.requestId, r.wake, target)) sent++;
    if (sent > 0) r.log.debug({ mappings: sent }, 'S205 notification sent');
    if (nodes.length === 0) return;
    const cluster = ctx.cluster!;
    for (const node of nodes) {
      cluster
        .send(node, {
          kind: 'notify',
          requestId: r.hex,
          equipmentId: r.equipmentId,
          deviceAddress: r.entry.address,
          devicePort: r.entry.port,
          fromNode: cluster.nodeId,
          wake: r.wake,
        })
        .then((receivers) => {
          // The node holding the request's entry is gone and nothing else wakes the device.
          if (receivers === 0 && node === r.owner && targets.length === 0 && nodes.length === 1) gone();
        })
        .catch((err: Error) => r.log.debug({ err: err.message, node }, 'routing the notification failed; retrying'));
    }
  };
}
