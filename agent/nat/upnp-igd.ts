/**
 * A UPnP Internet Gateway Device client, v1 and v2: read the description document, find the
 * WANIPConnection (v2 or v1) or WANPPPConnection:1 service, and call its SOAP actions
 * GetExternalIPAddress, AddPortMapping and DeletePortMapping. These three actions are the same in
 * both versions (v2 only forbids an unlimited lease, so a lease is always given).
 * Any host on the LAN can answer, so every answer is read as a stream with a hard byte limit
 * (cut off there, RESPONSE_TOO_LARGE) under a deadline, and SOAP goes only to the host whose
 * description we read (ssdp.ts decides which hosts that may be).
 */
import { abortError, ErrorCodes, PeerlinkError, type ErrorCode } from '../common/errors.js';

export const WAN_SERVICE_TYPES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
] as const;
/** A real description is a few kB; miniupnpd's is under 10 kB. */
export const UPNP_MAX_BODY_BYTES = 256 * 1024;
/** Each HTTP exchange with a gateway, whatever deadline the caller gave (a LAN answers in ms). */
export const UPNP_HTTP_TIMEOUT_MS = 5_000;

export interface IgdService {
  readonly controlUrl: URL;
  readonly serviceType: string;
  /** 1 or 2, from the service type. */
  readonly version: number;
}

/** UPNP_FAILED (or RESPONSE_TOO_LARGE); `upnpCode` is the gateway's own SOAP errorCode when it sent one. */
export class UpnpError extends PeerlinkError {
  readonly upnpCode: number | undefined;
  constructor(message: string, options: { upnpCode?: number; code?: ErrorCode; cause?: unknown } = {}) {
    super(options.code ?? ErrorCodes.UPNP_FAILED, message, { cause: options.cause });
    this.upnpCode = options.upnpCode;
    this.name = 'UpnpError';
  }
}

// Regular expressions, not an XML parser: the documents are the gateway's own small description and
// SOAP answers (only our default gateway's are fetched, ssdp.ts), read under UPNP_MAX_BODY_BYTES, and
// only a few leaf elements are taken (serviceType, controlURL, URLBase, NewExternalIPAddress,
// errorCode, errorDescription); what is taken is checked after (a control URL on the described host).
// No entities are expanded, so a hostile document gets at worst "no mapping", and the agent carries no
// parser. The scan is linear: a lazy `<x>([\s\S]*?)</x>` is retried from every opening tag, and
// 256 KiB of unclosed openings cost seconds of CPU; here an opening without its close ends the search.
const xmlText = (s: string): string =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
const xmlEscape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The text of each `name` element (any namespace prefix), in document order; `first` stops at one. */
function elements(xml: string, name: string, first = false): string[] {
  const open = new RegExp(`<(?:[\\w-]+:)?${name}>`, 'g');
  const close = new RegExp(`</(?:[\\w-]+:)?${name}>`, 'g');
  const found: string[] = [];
  for (let o = open.exec(xml); o; o = open.exec(xml)) {
    close.lastIndex = open.lastIndex;
    const c = close.exec(xml);
    if (!c) break;
    found.push(xml.slice(open.lastIndex, c.index));
    if (first) break;
    open.lastIndex = close.lastIndex;
  }
  return found;
}
const tag = (xml: string, name: string): string | undefined => elements(xml, name, true)[0];

/** The best WAN connection service of a description document, or null when it has none. */
export function findWanService(descriptionXml: string, location: URL): IgdService | null {
  const base = tag(descriptionXml, 'URLBase')?.trim();
  const services = elements(descriptionXml, 'service');
  for (const type of WAN_SERVICE_TYPES) {
    const s = services.find((x) => tag(x, 'serviceType')?.trim() === type);
    const control = s ? tag(s, 'controlURL')?.trim() : undefined;
    if (!control) continue;
    try {
      return { controlUrl: new URL(xmlText(control), base ? new URL(base) : location), serviceType: type, version: Number(type.slice(-1)) };
    } catch {
      continue;
    }
  }
  return null;
}

/**
 * The body as text, read chunk by chunk: past `maxBytes` the stream is cancelled (the connection
 * closed) and RESPONSE_TOO_LARGE thrown, so an endless or huge answer costs at most that much.
 */
export async function readBounded(res: Response, maxBytes = UPNP_MAX_BODY_BYTES): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined);
    throw new UpnpError(`answer of ${declared} bytes is larger than ${maxBytes}`, { code: ErrorCodes.RESPONSE_TOO_LARGE });
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => undefined);
      throw new UpnpError(`answer larger than ${maxBytes} bytes`, { code: ErrorCodes.RESPONSE_TOO_LARGE });
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** fetch and read the bounded body, both under the caller's signal and UPNP_HTTP_TIMEOUT_MS. */
async function exchange(url: URL, init: RequestInit, signal: AbortSignal): Promise<{ res: Response; text: string }> {
  if (signal.aborted) throw abortError(signal);
  const within = AbortSignal.any([signal, AbortSignal.timeout(UPNP_HTTP_TIMEOUT_MS)]);
  try {
    const res = await fetch(url, { ...init, signal: within, redirect: 'error' });
    return { res, text: await readBounded(res) };
  } catch (err) {
    if (err instanceof PeerlinkError) throw err;
    if (signal.aborted) throw abortError(signal);
    // fetch says only "fetch failed"; the socket's own code (ECONNREFUSED, ...) is in its cause.
    const why = (err as { cause?: { code?: unknown } }).cause?.code;
    const what = within.aborted ? `no answer within ${UPNP_HTTP_TIMEOUT_MS} ms` : typeof why === 'string' ? why : (err as Error).message;
    throw new UpnpError(`${url.href}: ${what}`, { cause: err });
  }
}

export async function describeGateway(location: URL, signal: AbortSignal): Promise<IgdService> {
  const { res, text } = await exchange(location, {}, signal);
  if (!res.ok) throw new UpnpError(`description ${location.href}: HTTP ${res.status}`);
  const service = findWanService(text, location);
  if (!service) throw new UpnpError(`description ${location.href}: no WANIPConnection or WANPPPConnection service`);
  // SOAP goes to the host that described itself, not to one its document names (URLBase, controlURL).
  if (service.controlUrl.hostname !== location.hostname || service.controlUrl.protocol !== 'http:') {
    throw new UpnpError(`description ${location.href}: control URL ${service.controlUrl.href} is on another host`);
  }
  return service;
}

/** One SOAP action; resolves with the response's body XML, rejects with the gateway's UPnP error. */
export async function soapCall(
  s: IgdService,
  action: string,
  args: Readonly<Record<string, string | number>>,
  signal: AbortSignal,
): Promise<string> {
  const body =
    '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `<u:${action} xmlns:u="${s.serviceType}">` +
    Object.entries(args)
      .map(([k, v]) => `<${k}>${xmlEscape(String(v))}</${k}>`)
      .join('') +
    `</u:${action}></s:Body></s:Envelope>\r\n`;
  const { res, text } = await exchange(
    s.controlUrl,
    { method: 'POST', headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${s.serviceType}#${action}"` }, body },
    signal,
  );
  if (!res.ok) {
    const code = Number(tag(text, 'errorCode') ?? NaN);
    const description = tag(text, 'errorDescription') ?? `HTTP ${res.status}`;
    throw new UpnpError(
      `${action}: ${Number.isFinite(code) ? `${code} ` : ''}${xmlText(description)}`,
      Number.isFinite(code) ? { upnpCode: code } : {},
    );
  }
  return text;
}

export async function externalAddress(s: IgdService, signal: AbortSignal): Promise<string> {
  const xml = await soapCall(s, 'GetExternalIPAddress', {}, signal);
  const ip = tag(xml, 'NewExternalIPAddress')?.trim();
  if (!ip) throw new UpnpError('GetExternalIPAddress: no address in the answer');
  return ip;
}

export function addPortMapping(
  s: IgdService,
  m: { externalPort: number; internalPort: number; internalClient: string; description: string; leaseS: number },
  signal: AbortSignal,
): Promise<string> {
  return soapCall(
    s,
    'AddPortMapping',
    {
      NewRemoteHost: '',
      NewExternalPort: m.externalPort,
      NewProtocol: 'TCP',
      NewInternalPort: m.internalPort,
      NewInternalClient: m.internalClient,
      NewEnabled: 1,
      NewPortMappingDescription: m.description,
      NewLeaseDuration: m.leaseS,
    },
    signal,
  );
}

export function deletePortMapping(s: IgdService, externalPort: number, signal: AbortSignal): Promise<string> {
  return soapCall(s, 'DeletePortMapping', { NewRemoteHost: '', NewExternalPort: externalPort, NewProtocol: 'TCP' }, signal);
}

/** UPnP error 714: no mapping at that external port. */
const UPNP_NO_SUCH_ENTRY = 714;

/** The mapping at `externalPort` (TCP, any remote host), or null when the gateway has none there. */
export async function getSpecificPortMapping(
  s: IgdService,
  externalPort: number,
  signal: AbortSignal,
): Promise<{ internalClient: string; internalPort: number; description: string } | null> {
  let xml: string;
  try {
    xml = await soapCall(
      s,
      'GetSpecificPortMappingEntry',
      { NewRemoteHost: '', NewExternalPort: externalPort, NewProtocol: 'TCP' },
      signal,
    );
  } catch (err) {
    if (err instanceof UpnpError && err.upnpCode === UPNP_NO_SUCH_ENTRY) return null;
    throw err;
  }
  return {
    internalClient: xmlText(tag(xml, 'NewInternalClient')?.trim() ?? ''),
    internalPort: Number(tag(xml, 'NewInternalPort')?.trim() ?? NaN),
    description: xmlText(tag(xml, 'NewPortMappingDescription')?.trim() ?? ''),
  };
}
