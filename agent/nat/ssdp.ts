/**
 * SSDP search for Internet Gateway Devices (UPnP Device Architecture 1.1, section 1.3.2): an
 * M-SEARCH to 239.255.255.250:1900 for IGD v1 and v2; gateways answer by unicast with a LOCATION
 * header naming their description document. Malformed answers are ignored, and so is any answer
 * whose LOCATION is not on the host that sent it, or that does not come from our default gateway
 * (acceptLocation): any LAN host may answer, and the description URL is fetched next.
 */
import { createSocket } from 'node:dgram';
import { abortError } from '../common/errors.js';

export const SSDP_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;
export const IGD_DEVICE_TYPES = [
  'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
  'urn:schemas-upnp-org:device:InternetGatewayDevice:1',
] as const;
/** Re-send the searches this often within the window: a lost datagram costs one interval. */
const SEARCH_RESEND_MS = 500;

function searchMessage(st: string): Buffer {
  return Buffer.from(`M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_ADDRESS}:${SSDP_PORT}\r\nMAN: "ssdp:discover"\r\nMX: 1\r\nST: ${st}\r\n\r\n`);
}

/** The LOCATION of an SSDP answer for an IGD, or null for anything else. */
export function parseSearchResponse(msg: Buffer): { location: URL; st: string } | null {
  const text = msg.toString('latin1');
  if (!/^HTTP\/1\.[01] 200/i.test(text)) return null;
  const header = (name: string): string | undefined => new RegExp(`^${name}:[ \\t]*(.*?)[ \\t]*$`, 'im').exec(text)?.[1];
  const st = header('ST') ?? '';
  const location = header('LOCATION');
  if (!location || !IGD_DEVICE_TYPES.some((t) => st === t)) return null;
  try {
    const url = new URL(location);
    return url.protocol === 'http:' ? { location: url, st } : null;
  } catch {
    return null;
  }
}

/**
 * Whether to fetch the description an answer names. Only on the host that sent the answer (or a
 * LAN host could make the agent fetch from any third party: another device's admin page, a server
 * on the Internet) and only when that host is our IPv4 default gateway: the router whose port
 * forwarding we want is the one our traffic leaves through. No known gateway, no UPnP.
 */
export function acceptLocation(location: URL, from: string, gateway: string | null): boolean {
  return gateway !== null && from === gateway && location.hostname === from;
}

export interface SearchOptions {
  readonly timeoutMs: number;
  /** The default gateway's address (default-gateway.ts); null: none known. */
  readonly gateway: string | null;
  readonly signal?: AbortSignal;
  readonly onAnswer: (location: URL) => void;
  /** An IGD answer refused by acceptLocation (for logs and tests). */
  readonly onIgnored?: (location: URL, from: string) => void;
  /** Where searches go; default the SSDP multicast group (tests answer on loopback). */
  readonly to?: { readonly address: string; readonly port: number };
}

/** Description URLs of the gateways that answer within `timeoutMs` (each once), in order of answer. */
export function searchGateways(o: SearchOptions): Promise<void> {
  const to = o.to ?? { address: SSDP_ADDRESS, port: SSDP_PORT };
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(abortError(o.signal));
    const sock = createSocket({ type: 'udp4' });
    const seen = new Set<string>();
    let resend: NodeJS.Timeout | undefined;
    const finish = (err?: Error): void => {
      clearTimeout(deadline);
      clearInterval(resend);
      o.signal?.removeEventListener('abort', onAbort);
      sock.close();
      if (err) reject(err);
      else resolve();
    };
    const deadline = setTimeout(() => finish(), o.timeoutMs);
    const onAbort = (): void => finish(abortError(o.signal!));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    sock.on('error', () => finish());
    sock.on('message', (msg, rinfo) => {
      const r = parseSearchResponse(msg);
      if (!r) return;
      if (!acceptLocation(r.location, rinfo.address, o.gateway)) {
        o.onIgnored?.(r.location, rinfo.address);
        return;
      }
      if (seen.has(r.location.href)) return;
      seen.add(r.location.href);
      o.onAnswer(r.location);
    });
    sock.bind(0, () => {
      sock.setMulticastTTL(2);
      const send = (): void => {
        for (const st of IGD_DEVICE_TYPES) sock.send(searchMessage(st), to.port, to.address, () => undefined);
      };
      send();
      resend = setInterval(send, SEARCH_RESEND_MS);
    });
  });
}
