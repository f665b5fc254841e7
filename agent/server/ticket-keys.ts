/**
 * TLS session tickets for the server's TLS port: devices and clients that connected once resume
 * (no certificate sent, no signature made, no chain verified) on their next connection.
 *
 * Ticket keys are the same on every node that shares the certificate, so a ticket from one node
 * opens a session at another: they are derived with HKDF-SHA256 from the server's private key
 * (which those nodes share already; HKDF's output tells nothing about it) and the current epoch,
 * floor(wall clock / TICKET_KEY_ROTATE_MS). Every node turns to the next key at the same moment,
 * with no coordination; a ticket from the previous epoch no longer opens (Node holds one key), and
 * that peer makes one full handshake and gets a fresh ticket. A new certificate key (renewal)
 * changes every ticket key as well. Node's default, a random key per process, would make each
 * node (and each restart) refuse the others' tickets.
 */
import { createPrivateKey, hkdfSync } from 'node:crypto';
import type { Server } from 'node:tls';

/** One ticket key's life; also the ticket lifetime the server announces. */
export const TICKET_KEY_ROTATE_MS = 60 * 60_000;
/** Node's ticket key: 16 bytes name, 16 HMAC secret, 16 AES key. */
export const TICKET_KEYS_BYTES = 48;
const SALT = Buffer.from('peerlink tls ticket keys v1');

/** The secret ticket keys come from: the DER of the server's private key. */
export function ticketSecretFromKey(keyPem: string): Buffer {
  return createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' });
}

export function ticketEpoch(nowMs: number, rotateMs = TICKET_KEY_ROTATE_MS): number {
  return Math.floor(nowMs / rotateMs);
}

export function deriveTicketKeys(secret: Buffer, epoch: number): Buffer {
  const info = Buffer.alloc(8);
  info.writeBigUInt64BE(BigInt(epoch));
  return Buffer.from(hkdfSync('sha256', secret, SALT, info, TICKET_KEYS_BYTES));
}

export interface TicketKeyRotation {
  stop(): void;
}

/** Set the current epoch's keys on `server` now and at each epoch boundary (an unref'd timer). */
export function rotateTicketKeys(server: Server, secret: Buffer, o: { now?: () => number; rotateMs?: number } = {}): TicketKeyRotation {
  const now = o.now ?? Date.now;
  const rotateMs = o.rotateMs ?? TICKET_KEY_ROTATE_MS;
  let timer: NodeJS.Timeout | undefined;
  const apply = (): void => {
    const t = now();
    server.setTicketKeys(deriveTicketKeys(secret, ticketEpoch(t, rotateMs)));
    // A few ms past the boundary, so that this node does not set the old epoch's keys again.
    timer = setTimeout(apply, rotateMs - (t % rotateMs) + 5);
    timer.unref();
  };
  apply();
  return { stop: () => clearTimeout(timer) };
}
