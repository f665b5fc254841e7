/**
 * Relayed sessions across nodes. The client joins the relay at the node that holds its request
 * (it got the offer there); the device joins at its own node. That node finds, in Redis, which
 * node offered the relay, joins it there on the device's behalf — a TLS connection to that node's
 * TLS port, proving itself with the attach proof it can compute (it holds the master key), bound
 * to that TLS session — and then copies bytes between the device and that connection. What
 * crosses both nodes is the end-to-end TLS 1.3 PSK channel: neither node can read it (P4).
 * The nodes share one server certificate; the joining node accepts exactly that certificate.
 *
 * The offer is recorded when the client's node answers the verdict this node sent it, while the
 * device may join here as soon as its verdict is out (its direct dial refused at once): on a fast
 * network its join can come first. So a device whose ok verdict this node sent on (expect()) gets
 * its offer waited for, a bounded while, once per verdict; any other join is looked up once.
 */
import { identityName } from '../protocol/identity-name.js';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { join } from '../common/pipe.js';
import { RELAY_PAIR_TIMEOUT_MS } from '../protocol/constants.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import { ATTACH_EXPORTER_LABEL, attachProof, deriveRegistrationKey, KEY_BYTES } from '../protocol/keys.js';
import { decodeRelayOffer, droppedField, encodeRelayOffer, parseTlsAddress, type RelayOffer } from './node-messages.js';
import type { RedisRegistry } from './redis-registry.js';

export interface RelayBridgeOptions {
  readonly cluster: RedisRegistry;
  readonly certPem: string;
  readonly masterKey: Buffer;
  /** Where other nodes reach this node's TLS port ("host:port"; known once listening). */
  readonly tlsAddress: () => string;
  readonly joinTimeoutMs: number;
  readonly logger: Logger;
}

/** How long a device that came before its offer (expect()) waits for it to be recorded in Redis. */
export const RELAY_OFFER_WAIT_MS = 5_000;
/** The first look again after a miss; doubled up to the next (a few lookups in the usual case). */
const OFFER_RETRY_FIRST_MS = 10;
const OFFER_RETRY_MAX_MS = 250;
/** Verdicts expected to bring a device's join (the newest ones; each waited for RELAY_OFFER_WAIT_MS at most). */
export const RELAY_EXPECTED_MAX = 10_000;

export interface RelayBridge {
  /**
   * This node sent the device's ok verdict for the request to the client's node, which offers the
   * relay on it: the device's join may come before that offer is in Redis, so bridge() waits for it.
   */
  expect(requestIdHex: string, equipmentId: string): void;
  /** Record that this node offered a relay for the request (other nodes may bridge to it). */
  offered(requestIdHex: string): void;
  /** The device joined here for a relay another node offered: bridge it; false if none is known. */
  /** `generation`: the device identity's (identity-name.ts), joined under at the other node as the device named it. */
  bridge(device: { channel: FrameChannel; socket: Socket }, equipmentId: string, requestId: Buffer, generation?: number): Promise<boolean>;
  readonly bridged: number;
  /** Offers read from Redis that did not decode (node-messages.ts), dropped. */
  readonly malformedOffers: number;
}

export function createRelayBridge(o: RelayBridgeOptions): RelayBridge {
  const fingerprint = new X509Certificate(o.certPem).fingerprint256;
  const offerKey = (hex: string): string => `{o:${hex}}`;
  let bridged = 0;
  let malformedOffers = 0;
  /** expect()ed requests: the device they are for, and until when its offer is waited for. */
  const expected = new Map<string, { readonly equipmentId: string; readonly untilMs: number }>();

  /** The offer for `hex` from Redis; undefined: none (yet); null: Redis did not answer. */
  const lookup = (hex: string): Promise<string | undefined | null> => o.cluster.getValue(offerKey(hex)).catch(() => null);

  /**
   * Looks for the offer again until it is there, the wait is over, or the device's socket is
   * destroyed (its reset, our stop()). A device that ends its side while its socket is paused is not
   * read, so the wait's bound (RELAY_OFFER_WAIT_MS) is what ends that one. A Redis error is a miss:
   * looked up again (the backoff caps it at ~25 lookups).
   */
  async function waitForOffer(hex: string, untilMs: number, device: Socket): Promise<string | undefined | null> {
    const left = new AbortController();
    const onClose = (): void => left.abort();
    device.once('close', onClose);
    try {
      for (let delayMs = OFFER_RETRY_FIRST_MS; ; delayMs = Math.min(delayMs * 2, OFFER_RETRY_MAX_MS)) {
        const waitMs = Math.min(delayMs, untilMs - Date.now());
        if (waitMs <= 0 || device.destroyed) return undefined;
        await sleep(waitMs, undefined, { signal: left.signal, ref: false });
        const v = await lookup(hex);
        if (v !== undefined && v !== null) return v;
      }
    } catch {
      return undefined; // the device left
    } finally {
      device.off('close', onClose);
    }
  }

  return {
    expect(hex, equipmentId) {
      expected.delete(hex);
      expected.set(hex, { equipmentId, untilMs: Date.now() + RELAY_OFFER_WAIT_MS });
      if (expected.size > RELAY_EXPECTED_MAX) expected.delete(expected.keys().next().value!);
    },
    get bridged() {
      return bridged;
    },
    get malformedOffers() {
      return malformedOffers;
    },
    offered(hex) {
      let offer: RelayOffer;
      try {
        const tls = parseTlsAddress(o.tlsAddress(), 'redis.tls_address');
        offer = { node: o.cluster.nodeId, tlsHost: tls.host, tlsPort: tls.port };
      } catch (err) {
        o.logger.warn({ err: (err as Error).message }, "cannot offer the relay to other nodes: this node's TLS address is not host:port");
        return;
      }
      void o.cluster
        .putValue(offerKey(hex), encodeRelayOffer(offer), o.joinTimeoutMs)
        .catch((err: Error) => o.logger.debug({ err: err.message }, 'could not record the relay offer in Redis'));
    },
    async bridge(device, equipmentId, requestId, generation = 0) {
      const hex = requestId.toString('hex');
      const log = o.logger.child({ requestId: hex.slice(0, 12), equipmentId });
      let v = await lookup(hex);
      const wanted = expected.get(hex);
      // Once per verdict: a device joining again looks once.
      if (wanted?.equipmentId === equipmentId) expected.delete(hex);
      if (v === undefined && wanted?.equipmentId === equipmentId) {
        log.debug('relay across nodes: the device came before the offer; waiting for it');
        v = await waitForOffer(hex, wanted.untilMs, device.socket);
      }
      if (!v) return false;
      let offer: RelayOffer;
      try {
        offer = decodeRelayOffer(v);
      } catch (err) {
        malformedOffers++;
        log.debug({ field: droppedField(err), err: (err as Error).message }, 'dropped a malformed relay offer read from Redis');
        return false;
      }
      // The device may have gone while Redis answered (or while we waited): its offer is not taken.
      if (offer.node === o.cluster.nodeId || device.socket.destroyed) return false;
      const tlsAt = `${offer.tlsHost.includes(':') ? `[${offer.tlsHost}]` : offer.tlsHost}:${offer.tlsPort}`;
      const upstream = await new Promise<TLSSocket | null>((resolve) => {
        // allowHalfOpen: the end-to-end channel half-closes through the bridge (as through the relay).
        const options: ConnectionOptions & { allowHalfOpen: boolean } = {
          host: offer.tlsHost,
          port: offer.tlsPort,
          rejectUnauthorized: false,
          allowHalfOpen: true,
        };
        const s = tlsConnect(options, () => {
          s.setNoDelay(true); // tls.connect() ignores the `noDelay` option
          // Only another node of this fleet: the same certificate as ours.
          if (s.getPeerX509Certificate()?.fingerprint256 !== fingerprint) {
            s.destroy();
            resolve(null);
          } else resolve(s);
        });
        s.once('error', () => resolve(null));
        s.setTimeout(o.joinTimeoutMs, () => s.destroy());
      });
      if (!upstream) {
        log.warn({ node: offer.node, at: tlsAt }, 'relay across nodes: cannot reach the node that offered it');
        return false;
      }
      upstream.setTimeout(0);
      const up = new FrameChannel(upstream);
      try {
        await up.next(RELAY_PAIR_TIMEOUT_MS); // HELLO
        const exporter = upstream.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
        const name = identityName(equipmentId, generation);
        up.send({
          type: FrameType.RELAY_JOIN_DEVICE,
          equipmentId,
          ...(generation ? { generation } : {}),
          requestId,
          proof: attachProof(deriveRegistrationKey(o.masterKey, name), requestId, exporter),
        });
        const paired = await up.next(RELAY_PAIR_TIMEOUT_MS);
        if (paired.type !== FrameType.RELAY_PAIRED) throw new Error('the other node answered out of turn');
      } catch (err) {
        log.warn({ node: offer.node, err: (err as Error).message }, 'relay across nodes: the other node did not pair');
        upstream.destroy();
        return false;
      }
      if (device.socket.destroyed) {
        // It left while the other node paired it: that node's slot is freed when this leg closes.
        upstream.destroy();
        return false;
      }
      device.channel.send({ type: FrameType.RELAY_PAIRED });
      device.channel.release();
      up.release();
      bridged++;
      log.info({ node: offer.node }, 'relay session bridged to the node holding the client (end-to-end encrypted; ciphertext only)');
      device.socket.resume();
      upstream.resume();
      void join(device.socket, upstream).then((r) =>
        log.info({ bytesToClient: r.bytesAtoB, bytesFromClient: r.bytesBtoA }, 'bridged relay session ended'),
      );
      return true;
    },
  };
}
