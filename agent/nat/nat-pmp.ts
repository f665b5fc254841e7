/**
 * NAT-PMP (RFC 6886): the gateway's external address (opcode 0) and TCP port mappings (opcode 2)
 * over UDP to gateway:5351. Requests are re-sent at 250 ms, doubling (RFC 6886 section 3.1), until the
 * deadline; answers must come from the gateway's port 5351 and match the request, others are ignored.
 */
import { createSocket } from 'node:dgram';
import { abortError, ErrorCodes, PeerlinkError } from '../common/errors.js';

export const NATPMP_PORT = 5351;
const FIRST_RETRY_MS = 250;
const RESULT_TEXT: Readonly<Record<number, string>> = {
  1: 'unsupported version',
  2: 'not authorized or refused',
  3: 'network failure (the gateway has no external address)',
  4: 'out of resources',
  5: 'unsupported opcode',
};

/** NATPMP_FAILED; `resultCode` is the gateway's own (RFC 6886 section 3.5) when it answered with one. */
export class NatPmpError extends PeerlinkError {
  readonly resultCode: number | undefined;
  constructor(message: string, options: { resultCode?: number; cause?: unknown } = {}) {
    super(ErrorCodes.NATPMP_FAILED, message, { cause: options.cause });
    this.resultCode = options.resultCode;
    this.name = 'NatPmpError';
  }
}

function request(gateway: string, req: Buffer, expectOp: number, minBytes: number, signal: AbortSignal): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(abortError(signal));
    const sock = createSocket('udp4');
    let retry: NodeJS.Timeout | undefined;
    let wait = FIRST_RETRY_MS;
    const finish = (f: () => void): void => {
      clearTimeout(retry);
      signal.removeEventListener('abort', onAbort);
      sock.close();
      f();
    };
    const onAbort = (): void => finish(() => reject(new NatPmpError(`no answer from ${gateway}:${NATPMP_PORT}`, { cause: signal.reason })));
    signal.addEventListener('abort', onAbort, { once: true });
    sock.on('error', (err) => finish(() => reject(new NatPmpError(`socket to ${gateway}:${NATPMP_PORT}: ${err.message}`, { cause: err }))));
    sock.on('message', (msg, rinfo) => {
      if (rinfo.address !== gateway || rinfo.port !== NATPMP_PORT) return;
      if (msg.length < minBytes || msg[0] !== 0 || msg[1] !== expectOp) return;
      const result = msg.readUInt16BE(2);
      if (result !== 0) {
        finish(() =>
          reject(new NatPmpError(`gateway answered result ${result}: ${RESULT_TEXT[result] ?? 'unknown'}`, { resultCode: result })),
        );
        return;
      }
      finish(() => resolve(msg));
    });
    const send = (): void => {
      sock.send(req, NATPMP_PORT, gateway, () => undefined);
      retry = setTimeout(send, wait);
      wait *= 2;
    };
    sock.bind(0, send);
  });
}

export async function natPmpExternalAddress(gateway: string, signal: AbortSignal): Promise<string> {
  const res = await request(gateway, Buffer.from([0, 0]), 128, 12, signal);
  return [...res.subarray(8, 12)].join('.');
}

/** Map (or with lifetimeS 0, remove) a TCP port; resolves with the external port and granted lifetime. */
export async function natPmpMapTcp(
  gateway: string,
  m: { internalPort: number; externalPort: number; lifetimeS: number },
  signal: AbortSignal,
): Promise<{ externalPort: number; lifetimeS: number }> {
  const req = Buffer.alloc(12);
  req[1] = 2;
  req.writeUInt16BE(m.internalPort, 4);
  req.writeUInt16BE(m.externalPort, 6);
  req.writeUInt32BE(m.lifetimeS, 8);
  for (;;) {
    const res = await request(gateway, req, 130, 16, signal);
    // An answer for another of our mappings (same socket kinds) is not ours: ask again.
    if (res.readUInt16BE(8) !== m.internalPort) continue;
    return { externalPort: res.readUInt16BE(10), lifetimeS: res.readUInt32BE(12) };
  }
}
