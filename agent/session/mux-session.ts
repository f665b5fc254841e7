/**
 * One end of a multiplexed session (agent/protocol/mux-frames.ts) over the end-to-end channel:
 * the stream table, per-stream credit windows, and one write queue. Streams are not Duplexes:
 * each has a sink (its consumer's callbacks) and is fed by send()/finish(); mux-socket.ts glues a
 * stream straight to a net.Socket, mux-duplex.ts makes a Duplex of one for library users.
 * Frames leave through one write queue (mux-writer.ts). Memory is bounded by the windows: a stream's
 * receiver holds at most MUX_STREAM_WINDOW_BYTES of it, a sender's surplus stays in its source; and
 * by pieces, as the window counts bytes, not frames: early bytes and a socket's held bytes are copied
 * into one buffer past 16 pieces, and a socket has one write in flight (mux-socket.ts).
 * A peer that breaks the framing gets GO_AWAY PROTOCOL_ERROR and the session ends (logged, with
 * MuxProtocolError's code); the process goes on.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import {
  MUX_GRANT_THRESHOLD_BYTES,
  MUX_MAX_FRAME_BYTES,
  MUX_MAX_STREAM_ID,
  MUX_STREAM_WINDOW_BYTES,
  MuxFlag,
  MuxFrameReader,
  MuxGoAway,
  MuxProtocolError,
  MuxType,
  muxHeader,
  muxOpenName,
  readMuxOpenName,
} from '../protocol/mux-frames.js';
import { StreamRefusedError } from '../protocol/session-streams.js';
import { isStatus, Status, type StatusValue } from '../protocol/status.js';
import { createAnswerDeadlines } from './answer-deadlines.js';
import { HeldStreams, heldExpired } from './mux-held.js';
import { MuxStream, type MuxSink } from './mux-stream.js';
import { createMuxWriter } from './mux-writer.js';

export { MuxStream, type MuxSink };

export interface MuxSessionOptions {
  readonly channel: Duplex;
  readonly role: 'client' | 'device';
  readonly logger: Logger;
  /** The device: a stream was opened (cap and name already checked); answer with accept() or refuse(). */
  readonly onOpen?: (st: MuxStream) => void;
  /**
   * The most streams open at once. The device refuses more with DEVICE_BUSY; the client holds more
   * (not sent) until one of its open streams is gone, at most MUX_HELD_STREAMS_MAX of them.
   */
  readonly maxStreams: number;
  /** The client: how long the device has to answer a stream (a held one: held at most this long, then this long again from its open). */
  readonly openTimeoutMs?: number;
  /** Each time the last open stream is gone. */
  readonly onIdle?: () => void;
  /** The device: a stream refused at the cap, the framing broken by the peer (session-counts.ts). */
  readonly count?: (what: 'streamsRefusedBusy' | 'sessionProtocolErrors') => void;
}

export type MuxSession = ReturnType<typeof startMuxSession>;

/** Early payloads a stream holds as separate pieces before they are copied into one. */
const MUX_EARLY_PIECES_MAX = 16;
/** How long a closed session waits for the peer to end its side before the channel is cut. */
const CLOSE_WAIT_MS = 5000;
const BROKEN = (why: string): PeerlinkError => new PeerlinkError(ErrorCodes.TUNNEL_BROKEN, why);

export function startMuxSession(o: MuxSessionOptions) {
  const { channel, role, logger: log } = o;
  const streams = new Map<number, MuxStream>();
  // The client's streams not answered yet, held ones included (answer-deadlines.ts).
  const unanswered = createAnswerDeadlines<MuxStream>(o.openTimeoutMs ?? 0, expireAnswer);
  // The client's streams past the device's cap, oldest first: opened as slots free (mux-held.ts).
  const held = new HeldStreams();
  let nextId = 1;
  let lastPeerId = 0;
  let goneAway = false;
  /** We said GO_AWAY (close()): the session ends with its last stream. */
  let closing = false;
  let ended = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));

  const { queue, control, flush } = createMuxWriter(
    channel,
    () => ended,
    (queued) => {
      log.warn({ queued }, 'mux session closed: the peer does not read');
      destroy(BROKEN('the peer does not read the session'));
    },
  );

  function emitData(st: MuxStream, buf: Buffer): void {
    for (let at = 0; at < buf.length; at += MUX_MAX_FRAME_BYTES) {
      const part = at === 0 && buf.length <= MUX_MAX_FRAME_BYTES ? buf : buf.subarray(at, at + MUX_MAX_FRAME_BYTES);
      queue(muxHeader(MuxType.DATA, 0, st.id, part.length));
      queue(part);
    }
    st.sendCredit -= buf.length;
  }

  function remove(st: MuxStream): void {
    if (st.done) return;
    st.done = true;
    unanswered.delete(st);
    if (held.delete(st)) return; // never opened: no slot freed
    streams.delete(st.id);
    while (held.size > 0 && streams.size < o.maxStreams && !ended && !goneAway) openHeld();
    if (streams.size > 0 || ended) return;
    if (closing) endSession();
    else o.onIdle?.();
  }
  function maybeDone(st: MuxStream): void {
    if (st.finSent && st.finReceived) remove(st);
  }

  /** Bytes for the peer on `st`; false: they did not all fit its credit (pause the source until sink.writable()). */
  function send(st: MuxStream, buf: Buffer): boolean {
    if (st.done || st.finSent || st.pendingFin || ended) return true;
    if (st.pending) {
      st.pending.push(buf);
      return false;
    }
    if (buf.length <= st.sendCredit) {
      emitData(st, buf);
      return true;
    }
    const fits = st.sendCredit;
    if (fits > 0) emitData(st, buf.subarray(0, fits));
    st.pending = [buf.subarray(fits)];
    return false;
  }
  function sendFin(st: MuxStream): void {
    st.finSent = true;
    queue(muxHeader(MuxType.DATA, MuxFlag.FIN, st.id, 0));
    maybeDone(st);
  }
  /** No more bytes from us on `st` (after any still waiting for credit). */
  function finish(st: MuxStream): void {
    if (st.done || st.finSent || ended) return;
    if (st.pending) st.pendingFin = true;
    else sendFin(st);
  }
  /** End `st` both ways now; `status` tells the client why (a refusal), 0 for a plain reset. */
  function reset(st: MuxStream, status = 0): void {
    if (st.done) return;
    // The reset goes before the open of a held stream that takes its slot (remove()): the device counts in order.
    if (!ended && !held.has(st)) control(MuxType.WINDOW_UPDATE, MuxFlag.RST, st.id, status);
    remove(st);
  }
  /** The consumer took `n` bytes of `st`: grant them back (in batches). */
  function consumed(st: MuxStream, n: number): void {
    st.unGranted += n;
    if (st.unGranted < MUX_GRANT_THRESHOLD_BYTES || st.done || st.finReceived || ended) return;
    st.recvLeft += st.unGranted;
    control(MuxType.WINDOW_UPDATE, 0, st.id, st.unGranted);
    st.unGranted = 0;
  }

  function onCredit(st: MuxStream, delta: number): void {
    st.sendCredit += delta;
    // A receiver grants back only what it took, so credit never exceeds the window: more would let a
    // peer that does not read make us queue without bound.
    if (st.sendCredit > MUX_STREAM_WINDOW_BYTES) throw new MuxProtocolError(`stream ${st.id}: credit over the window`);
    const pending = st.pending;
    if (!pending) return;
    while (pending.length > 0 && st.sendCredit > 0) {
      const b = pending[0]!;
      if (b.length <= st.sendCredit) {
        pending.shift();
        emitData(st, b);
      } else {
        const fits = st.sendCredit;
        emitData(st, b.subarray(0, fits));
        pending[0] = b.subarray(fits);
      }
    }
    if (pending.length > 0) return;
    st.pending = null;
    if (st.pendingFin) sendFin(st);
    if (!st.done) st.sink?.writable();
  }

  function onOpenFrame(id: number, flags: number, payload: Buffer): void {
    if (role !== 'device') throw new MuxProtocolError('the device may not open streams');
    if (id % 2 !== 1 || id <= lastPeerId) throw new MuxProtocolError(`stream id ${id} after ${lastPeerId}`);
    lastPeerId = id;
    const named = readMuxOpenName(payload);
    if (!named) throw new MuxProtocolError(`stream ${id}: an open without a service name`);
    const early = payload.length - named.dataOffset;
    if (early > MUX_STREAM_WINDOW_BYTES) throw new MuxProtocolError(`stream ${id}: ${early} early bytes, over the window`);
    const st = new MuxStream(id, named.service);
    if (goneAway || streams.size >= o.maxStreams) {
      // Refused at once: its bytes are never kept.
      control(MuxType.WINDOW_UPDATE, MuxFlag.RST, id, Status.DEVICE_BUSY);
      o.count?.('streamsRefusedBusy');
      log.warn({ service: st.service, status: Status.DEVICE_BUSY, open: streams.size }, 'stream refused: too many streams on the session');
      return;
    }
    streams.set(id, st);
    st.recvLeft -= early;
    st.early = early > 0 ? [payload.subarray(named.dataOffset)] : [];
    if (flags & MuxFlag.FIN) st.finReceived = true;
    o.onOpen!(st);
  }

  const reader = new MuxFrameReader({
    data(id, flags, payload) {
      if (flags & MuxFlag.SYN) return onOpenFrame(id, flags, payload);
      const st = streams.get(id);
      if (!st) {
        // A stream that was ours and is gone (reset, refused): what was in flight is discarded.
        const opened = role === 'device' ? id <= lastPeerId : id < nextId;
        if (!opened) throw new MuxProtocolError(`DATA on stream ${id}, never opened`);
        return;
      }
      if (st.finReceived) throw new MuxProtocolError(`DATA on stream ${id} after its FIN`);
      if (payload.length > st.recvLeft) throw new MuxProtocolError(`stream ${id}: ${payload.length} bytes, over its window`);
      st.recvLeft -= payload.length;
      if (payload.length > 0) {
        if (st.sink) st.sink.data(payload);
        else if (st.early) {
          // Held until the service is connected: past a few pieces, one copy (the window counts bytes, not frames).
          st.early.push(payload);
          if (st.early.length >= MUX_EARLY_PIECES_MAX) st.early = [Buffer.concat(st.early)];
        }
      }
      if (flags & MuxFlag.FIN) {
        st.finReceived = true;
        st.sink?.end();
        maybeDone(st);
      }
    },
    control(type, flags, id, value) {
      if (type === MuxType.PING) {
        // Answered while the peer reads what we send (a ping is optional: no queue of answers).
        if (flags & MuxFlag.SYN && channel.writableLength < MUX_MAX_FRAME_BYTES) control(MuxType.PING, MuxFlag.ACK, 0, value);
        return;
      }
      if (type === MuxType.GO_AWAY) {
        goneAway = true;
        failHeld(BROKEN('the device closed the session'));
        if (value !== MuxGoAway.NORMAL) log.info({ code: value }, 'the peer went away with an error');
        if (streams.size === 0 && role === 'client') destroy(BROKEN('the device closed the session'));
        return;
      }
      const st = streams.get(id);
      if (!st) return; // gone already: a late answer or grant
      if (flags & MuxFlag.RST) {
        remove(st);
        const refused = role === 'client' && !st.answered && value !== Status.OK;
        const status: StatusValue = isStatus(value) ? value : Status.INTERNAL;
        st.sink?.reset(refused ? new StreamRefusedError(status, st.service) : BROKEN(`the stream to ${st.service} was reset by the peer`));
        return;
      }
      if (flags & MuxFlag.ACK && role === 'client') {
        st.answered = true;
        unanswered.delete(st);
        st.onAnswered?.();
      }
      if (value > 0) onCredit(st, value);
    },
  });

  function expireAnswer(st: MuxStream, service: string): void {
    const wasHeld = held.has(st);
    reset(st);
    st.sink?.reset(
      wasHeld
        ? heldExpired(service, o.openTimeoutMs ?? 0, o.maxStreams)
        : new PeerlinkError(ErrorCodes.PEER_TIMEOUT, `the device did not answer the stream to ${service} within ${o.openTimeoutMs} ms`),
    );
  }
  /** The oldest held stream gets the slot that came free: its open, then what it held. */
  function openHeld(): void {
    const st = held.shift();
    // Its answer deadline starts again with the open it sends: the time held was ours, not the device's.
    if (unanswered.delete(st)) unanswered.add(st, st.service);
    streams.set(st.id, st);
    sendOpen(st);
    onCredit(st, MUX_STREAM_WINDOW_BYTES);
  }
  function sendOpen(st: MuxStream): void {
    const name = muxOpenName(st.service);
    queue(muxHeader(MuxType.DATA, MuxFlag.SYN, st.id, name.length));
    queue(name);
  }
  const failHeld = (err: Error | null): void => held.failAll(err, (st) => unanswered.delete(st));

  /** Ends our side in order (what is queued leaves first); the channel closes once the peer ends its side too. */
  function endSession(): void {
    flush();
    channel.end();
    setTimeout(() => channel.destroy(), CLOSE_WAIT_MS).unref();
    destroy(null, false);
  }

  /** End the session: every stream's consumer is told `err`. */
  function destroy(err: Error | null, now = true): void {
    if (ended) return;
    ended = true;
    unanswered.clear();
    failHeld(err);
    const all = [...streams.values()];
    streams.clear();
    for (const st of all) {
      st.done = true;
      st.sink?.reset(err);
    }
    if (now) channel.destroy();
    resolveClosed();
  }

  channel.on('data', (chunk: Buffer) => {
    if (ended) return;
    try {
      reader.push(chunk);
    } catch (err) {
      // A broken frame, or a fault of ours in handling one: this session ends, the process goes on.
      const broken = err instanceof MuxProtocolError;
      const e = err instanceof Error ? err : new Error(String(err));
      if (broken) {
        o.count?.('sessionProtocolErrors');
        log.warn({ err: e.message, code: err.code }, 'mux session closed: the peer broke the framing');
      } else log.error({ err: e.message, stack: e.stack }, 'mux session closed: internal error');
      control(MuxType.GO_AWAY, 0, 0, broken ? MuxGoAway.PROTOCOL_ERROR : MuxGoAway.INTERNAL);
      flush();
      destroy(e);
    }
  });
  channel.on('error', (err: Error) => log.info({ err: err.message }, 'session channel error'));
  channel.once('close', () => destroy(BROKEN('the session channel closed')));
  channel.once('end', () => destroy(BROKEN('the peer ended the session')));

  return {
    /** The client: a new stream to `service`; its bytes may follow at once (the device holds them until it answers). */
    open(service: string, sink: MuxSink): MuxStream {
      if (ended || goneAway || nextId > MUX_MAX_STREAM_ID) throw BROKEN('the session to the device has ended');
      // The device refuses a stream past its cap (DEVICE_BUSY, its local connection closed unanswered):
      // held here instead until one is gone (mux-held.ts).
      const st = new MuxStream(nextId, service);
      if (streams.size >= o.maxStreams || held.size > 0) held.hold(st, streams.size);
      nextId += 2;
      st.sink = sink;
      unanswered.add(st, service);
      if (!held.has(st)) {
        streams.set(st.id, st);
        sendOpen(st);
      }
      return st;
    },
    /** The device: the stream is open; its early bytes (and FIN) go to `sink` now. */
    accept(st: MuxStream, sink: MuxSink): void {
      if (st.done) return;
      st.answered = true;
      st.sink = sink;
      control(MuxType.WINDOW_UPDATE, MuxFlag.ACK, st.id, 0);
      const early = st.early ?? [];
      st.early = null;
      for (const b of early) sink.data(b);
      if (st.finReceived) {
        sink.end();
        maybeDone(st);
      }
    },
    /** The device: refuse `st` with a peerlink status; what it sent is discarded. */
    refuse(st: MuxStream, status: StatusValue): void {
      st.early = null;
      reset(st, status);
    },
    send,
    finish,
    reset,
    consumed,
    /** Streams open now, and held (the client's, past the cap). */
    active: (): number => streams.size + held.size,
    alive: (): boolean => !ended && !goneAway && nextId <= MUX_MAX_STREAM_ID,
    closed,
    /** No new streams (GO_AWAY); with `destroy`, end the session now. */
    close(how: 'graceful' | 'destroy' = 'graceful'): void {
      if (ended) return;
      closing = true;
      if (!goneAway) {
        goneAway = true;
        control(MuxType.GO_AWAY, 0, 0, MuxGoAway.NORMAL);
      }
      failHeld(BROKEN('the session was closed'));
      if (how === 'destroy') {
        flush();
        destroy(null);
      } else if (streams.size === 0) endSession();
    },
  };
}
