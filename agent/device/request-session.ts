/**
 * One connection request, from the device's side: after a notification (packet 205) open TLS to
 * the server (S206), prove we are the device for this request, receive the forwarded request,
 * decide (S207), answer, and only on success dial the client (S208) and join it to the local
 * service (S209).
 */
import type { Logger } from 'pino';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from '../common/pipe.js';
import { ErrorCodes, isPeerlinkError, PeerlinkError } from '../common/errors.js';
import { RELAY_PAIR_TIMEOUT_MS } from '../protocol/constants.js';
import { formatEndpoint } from '../protocol/address.js';
import { FrameChannel } from '../protocol/frame-channel.js';
import { FrameType } from '../protocol/frames.js';
import { ATTACH_EXPORTER_LABEL, attachProof, equalBytes, KEY_BYTES } from '../protocol/keys.js';
import { Status } from '../protocol/status.js';
import type { DeviceIdentity } from './identity.js';
import type { Decision, Forwarded } from './authorizer.js';
import { connectService, dialClient } from './dialer.js';
import { connectToServer } from './server-channel.js';

export interface SessionContext {
  readonly identity: DeviceIdentity;
  readonly server: { readonly host: string; readonly port: number; readonly serverName: string };
  readonly authorize: (fwd: Forwarded, serverNowMs: number) => Decision;
  readonly serverNow: () => number;
  readonly observeServerTime: (serverTimeMs: number, localMs: number) => void;
  readonly dialTimeoutMs: number;
  /** The direct dial's budget before falling back to the relay. */
  readonly directTimeoutMs: number;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

export interface SessionOutcome {
  readonly status: number;
  readonly bytesToClient: number;
  readonly bytesFromClient: number;
}

/** Meet the client at the server's relay for this request; resolves with the paired stream. */
async function joinRelay(requestId: Buffer, ctx: SessionContext): Promise<TLSSocket> {
  const tls = await connectToServer({ ...ctx.server, caPem: ctx.identity.caCert, signal: ctx.signal });
  const channel = new FrameChannel(tls);
  try {
    await channel.next(ctx.dialTimeoutMs, ctx.signal); // HELLO
    const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
    channel.send({
      type: FrameType.RELAY_JOIN_DEVICE,
      equipmentId: ctx.identity.equipmentId,
      requestId,
      proof: attachProof(ctx.identity.registrationKey, requestId, exporter),
    });
    const paired = await channel.next(RELAY_PAIR_TIMEOUT_MS, ctx.signal);
    if (paired.type !== FrameType.RELAY_PAIRED) throw new PeerlinkError(ErrorCodes.PROTOCOL, 'relay answered out of turn');
    return tls;
  } catch (err) {
    tls.destroy();
    throw err;
  }
}

export async function runRequestSession(requestId: Buffer, ctx: SessionContext): Promise<SessionOutcome> {
  const log = ctx.logger.child({ requestId: requestId.toString('hex').slice(0, 12) });
  const tls = await connectToServer({ ...ctx.server, caPem: ctx.identity.caCert, signal: ctx.signal });
  const channel = new FrameChannel(tls);
  let service: Socket | null = null;
  try {
    const hello = await channel.next(ctx.dialTimeoutMs, ctx.signal);
    if (hello.type === FrameType.HELLO) ctx.observeServerTime(hello.serverTimeMs, Date.now());
    const exporter = tls.exportKeyingMaterial(KEY_BYTES, ATTACH_EXPORTER_LABEL, requestId);
    channel.send({
      type: FrameType.DEVICE_ATTACH,
      equipmentId: ctx.identity.equipmentId,
      requestId,
      proof: attachProof(ctx.identity.registrationKey, requestId, exporter),
    });
    log.info('S206 connected to the server over TLS (certificate verified against the bundled CA)');
    const fwd = await channel.next(ctx.dialTimeoutMs, ctx.signal);
    if (fwd.type !== FrameType.FORWARD_REQUEST || !equalBytes(fwd.requestId, requestId)) {
      log.warn('server sent something other than the forwarded request');
      return { status: Status.BAD_REQUEST, bytesToClient: 0, bytesFromClient: 0 };
    }
    const decision = ctx.authorize(fwd, ctx.serverNow());
    let status: number = decision.status;
    if (decision.status !== Status.OK) {
      log.warn({ status: decision.status, reason: decision.reason, client: formatEndpoint(fwd.client) }, 'S207 request refused');
    } else {
      try {
        service = await connectService(decision.target, ctx.dialTimeoutMs);
      } catch (err) {
        status = Status.SERVICE_UNAVAILABLE;
        log.warn({ err: (err as Error).message }, 'S207 request valid but the local service is down');
      }
    }
    channel.send({ type: FrameType.DEVICE_VERDICT, requestId, status: status as typeof Status.OK });
    channel.close();
    if (decision.status !== Status.OK || status !== Status.OK || !service) {
      return { status, bytesToClient: 0, bytesFromClient: 0 };
    }
    log.info({ service: decision.request.service, client: formatEndpoint(decision.dial) }, 'S207 request authorised; S208 dialling the client');
    const channelOptions = {
      to: decision.dial,
      accessKey: ctx.identity.accessKey,
      clientNonce: decision.request.clientNonce,
      equipmentId: ctx.identity.equipmentId,
      service: decision.request.service,
      signal: ctx.signal,
    };
    let tunnel: TLSSocket;
    try {
      tunnel = await dialClient({ ...channelOptions, timeoutMs: ctx.directTimeoutMs });
      log.info('S208 direct channel up (TLS 1.3 PSK); S209 forwarding data');
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      log.info({ reason: (err as Error).message }, 'direct dial failed; meeting the client at the relay');
      const relayed = await joinRelay(requestId, ctx);
      tunnel = await dialClient({ ...channelOptions, over: relayed, timeoutMs: ctx.dialTimeoutMs });
      log.info('end-to-end channel up through the relay (TLS 1.3 PSK; the server sees ciphertext only); S209 forwarding data');
    }
    const svc = service;
    service = null;
    const onAbort = (): void => {
      tunnel.destroy();
      svc.destroy();
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    svc.resume();
    const r = await join(tunnel, svc);
    ctx.signal.removeEventListener('abort', onAbort);
    log.info({ bytesFromClient: r.bytesAtoB, bytesToClient: r.bytesBtoA }, 'S209 session ended');
    return { status: Status.OK, bytesToClient: r.bytesBtoA, bytesFromClient: r.bytesAtoB };
  } catch (err) {
    log.warn({ err: isPeerlinkError(err) ? err.code : (err as Error).message, detail: (err as Error).message }, 'request session failed');
    throw err;
  } finally {
    service?.destroy();
    if (!tls.destroyed) channel.close();
  }
}

