/**
 * A tunnel connection notices a peer that vanished, idle or not. TCP keepalive (first probe after
 * TUNNEL_KEEPALIVE_MS, then libuv's 10 probes 1 s apart) covers an idle connection, but the kernel
 * sends no keepalive while data is unacknowledged: a peer that vanishes mid-transfer is only given up
 * after tcp_retries2 (some 15 minutes), and the sender hangs that long (test/faults/peer-vanishes.spec.ts
 * measured a client still hanging after 180 s). Node cannot set TCP_USER_TIMEOUT, so this watches the
 * kernel's own count of retransmission timeouts in a row for the socket (/proc/net/tcp `retrnsmt`,
 * reset by every acknowledgement) and ends the connection when it reaches STALL_RETRANSMITS: with the
 * 200 ms minimum RTO doubling each time, that is ~25 s of no acknowledgement at all. A host whose own
 * link went down shows unanswered zero-window probes instead (unansweredIn below). Elsewhere than
 * Linux (no /proc/net/tcp) only keepalive applies.
 */
import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Socket } from 'node:net';
import { TUNNEL_KEEPALIVE_MS } from '../protocol/constants.js';
import { ErrorCodes, PeerlinkError } from './errors.js';

/** Retransmission timeouts in a row (no acknowledgement in between) after which the peer is gone. */
export const STALL_RETRANSMITS = 7;
export const STALL_POLL_MS = 2_000;

/** /proc/net/tcp's spelling of an IPv4 address and port: the address as a host-order u32 in hex. */
export function procEndpoint(address: string, port: number): string | null {
  const v4 = /^(?:::ffff:)?(\d+)\.(\d+)\.(\d+)\.(\d+)$/i.exec(address);
  if (!v4) return null;
  const b = v4.slice(1, 5).map(Number);
  const bytes = endianness() === 'LE' ? [b[3]!, b[2]!, b[1]!, b[0]!] : b;
  const hex = bytes
    .map((x) => x.toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
  return `${hex}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
}

/** The socket's consecutive retransmission timeouts, or null when it is not found. */
export async function retransmits(local: string, remote: string): Promise<number | null> {
  return (await socketState(local, remote))?.unanswered ?? null;
}

/** What the stall watch reads of one socket in /proc/net/tcp. */
export interface SocketState {
  /** Retransmission timeouts (or unanswered zero-window probes) in a row. */
  readonly unanswered: number;
  /** Bytes sent and not yet acknowledged, or not yet sent (tx_queue). */
  readonly txQueueBytes: number;
}

export async function socketState(local: string, remote: string): Promise<SocketState | null> {
  let text: string;
  try {
    text = await readFile('/proc/net/tcp', 'utf8');
  } catch {
    return null;
  }
  return socketStateIn(text, local, remote);
}

/**
 * From /proc/net/tcp's text: the socket's retransmission timeouts in a row, or its unanswered
 * zero-window probes in a row if more (null: not found). The probes count because a host whose own
 * link went down does not retransmit: it cannot send, so the kernel arms its probe timer instead
 * and counts the probes it could not send (measured in a network namespace with the link set down:
 * retrnsmt 0, probes 3 -> 7 over 27 s). A peer that is alive but reads nothing answers each probe,
 * which sets the count back to 0.
 */
export function unansweredIn(text: string, local: string, remote: string): number | null {
  return socketStateIn(text, local, remote)?.unanswered ?? null;
}

/** The socket's line in /proc/net/tcp's text, read (null: not found, or not that table). */
export function socketStateIn(text: string, local: string, remote: string): SocketState | null {
  // The table lists every socket of the namespace (thousands in TIME_WAIT after a web page's
  // connections): find the one line instead of splitting them all. Fields are single-spaced.
  const at = text.indexOf(` ${local} ${remote} `);
  if (at < 0) return null;
  const end = text.indexOf('\n', at);
  const f = text
    .slice(at, end < 0 ? undefined : end)
    .trim()
    .split(/\s+/);
  // local rem st tx:rx tr:when retrnsmt uid timeout(probes) ... (retrnsmt: 8 hex digits; anything else is not that table)
  if (!/^[0-9A-F]{8}$/i.test(f[5] ?? '')) return null;
  const probes = /^\d+$/.test(f[7] ?? '') ? Number(f[7]) : 0;
  const tx = /^([0-9A-F]{8}):[0-9A-F]{8}$/i.exec(f[3] ?? '');
  return { unanswered: Math.max(parseInt(f[5]!, 16), probes), txQueueBytes: tx ? parseInt(tx[1]!, 16) : Number.POSITIVE_INFINITY };
}

/** For tests: a shorter poll, and the table read through `readState` (default: /proc/net/tcp). */
export interface StallWatchOptions {
  readonly pollMs?: number;
  readonly readState?: (local: string, remote: string) => Promise<SocketState | null>;
}

/**
 * Keepalive on, and the stall watch: a socket whose data goes unacknowledged for STALL_RETRANSMITS
 * retransmissions in a row is destroyed with PEER_TIMEOUT. The watch ends with the socket.
 *
 * Reading /proc/net/tcp costs the kernel's formatting of every socket of the namespace (36 ms of
 * CPU for 8,800 sockets, most in TIME_WAIT, on the bench machine, issue 15: a tenth of a core per
 * tunnel at one read per STALL_POLL_MS). So a poll reads it only when the answer could be a stall:
 * not when bytes came from the peer since the last poll (its segments carry its acknowledgements;
 * a peer that stops hearing us stops sending new bytes within a window, and the reads resume), and
 * not when nothing was written since a read that found nothing outstanding (an idle connection,
 * which keepalive covers).
 */
export function keepTunnelAlive(socket: Socket, watch: StallWatchOptions = {}): void {
  const pollMs = watch.pollMs ?? STALL_POLL_MS;
  const readState = watch.readState ?? socketState;
  socket.setKeepAlive(true, TUNNEL_KEEPALIVE_MS);
  const { localAddress, localPort, remoteAddress, remotePort } = socket;
  if (!localAddress || !localPort || !remoteAddress || !remotePort) return;
  const local = procEndpoint(localAddress, localPort);
  const remote = procEndpoint(remoteAddress, remotePort);
  if (!local || !remote) return;
  let polling = false;
  let heard = socket.bytesRead;
  let wrote = socket.bytesWritten;
  // The last read found no byte outstanding and no retransmission.
  let settled = false;
  const timer = setInterval(() => {
    if (polling || socket.destroyed) return;
    const [r, w] = [socket.bytesRead, socket.bytesWritten];
    const peerSpoke = r !== heard;
    const sent = w !== wrote;
    heard = r;
    wrote = w;
    if (peerSpoke || (settled && !sent)) return;
    polling = true;
    void readState(local, remote).then((state) => {
      polling = false;
      const n = state?.unanswered ?? null;
      settled = state !== null && state.unanswered === 0 && state.txQueueBytes === 0;
      if (n !== null && n >= STALL_RETRANSMITS && !socket.destroyed) {
        socket.destroy(
          new PeerlinkError(
            ErrorCodes.PEER_TIMEOUT,
            `the peer stopped acknowledging (${n} retransmissions or probes in a row): the link to it is gone`,
          ),
        );
      }
    });
  }, pollMs);
  timer.unref();
  socket.once('close', () => clearInterval(timer));
}
