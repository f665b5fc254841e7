/**
 * Equipment IDs at the factory, per the manufacturer's scheme: from the serial number
 * ("<prefix><serial>") or from the MAC address ("<prefix><12 upper-case hex digits>").
 */
import { ErrorCodes, PeerlinkError } from '../common/errors.js';
import { EQUIPMENT_ID_PATTERN } from '../protocol/constants.js';

export const ID_SCHEMES = ['serial', 'mac'] as const;
export type IdScheme = (typeof ID_SCHEMES)[number];

export interface DeviceRecord {
  readonly serial: string;
  readonly mac?: string;
}

const MAC_PATTERN = /^[0-9a-fA-F]{2}([:-]?[0-9a-fA-F]{2}){5}$/;
const SERIAL_PATTERN = /^[A-Za-z0-9._-]{1,48}$/;

function invalid(message: string): PeerlinkError {
  return new PeerlinkError(ErrorCodes.OPTIONS_INVALID, message);
}

export function normalizeMac(mac: string): string {
  if (!MAC_PATTERN.test(mac)) throw invalid(`not a MAC address: ${JSON.stringify(mac)} (expected 6 hex pairs, e.g. 00:1A:2B:3C:4D:5E)`);
  return mac.replace(/[:-]/g, '').toUpperCase();
}

export function checkSerial(serial: string): string {
  if (!SERIAL_PATTERN.test(serial))
    throw invalid(`not a serial number: ${JSON.stringify(serial)} (expected 1-48 characters of A-Z a-z 0-9 . _ -)`);
  return serial;
}

export function equipmentIdFor(record: DeviceRecord, scheme: IdScheme, prefix: string): string {
  let body: string;
  if (scheme === 'mac') {
    if (record.mac === undefined || record.mac === '') throw invalid(`serial ${record.serial}: the mac scheme needs a mac column`);
    body = normalizeMac(record.mac);
  } else {
    body = checkSerial(record.serial);
  }
  const id = `${prefix}${body}`;
  if (!EQUIPMENT_ID_PATTERN.test(id)) throw invalid(`equipment id ${JSON.stringify(id)} is not 1-64 characters of A-Z a-z 0-9 . _ -`);
  return id;
}

/** Serials START..END inclusive, zero-padded to `digits` (default: the width of END). */
export function serialRange(range: string, digits?: number): string[] {
  const m = /^(\d{1,15})-(\d{1,15})$/.exec(range);
  if (!m) throw invalid(`--range: expected START-END with decimal numbers, found ${JSON.stringify(range)}`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw invalid(`--range: END ${end} is below START ${start}`);
  if (end - start >= 1_000_000) throw invalid(`--range: at most 1,000,000 serials per batch, found ${end - start + 1}`);
  const width = digits ?? m[2]!.length;
  const out: string[] = [];
  for (let n = start; n <= end; n++) out.push(String(n).padStart(width, '0'));
  return out;
}

/**
 * A CSV of devices: a header row naming the columns, `serial` required, `mac` optional; blank
 * lines and lines starting with # are skipped. Fields may be double-quoted. Errors name the line.
 */
export function parseDeviceCsv(text: string, file: string): DeviceRecord[] {
  const lines = text.split(/\r?\n/);
  let header: string[] | null = null;
  const out: DeviceRecord[] = [];
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(',').map((f) =>
      f
        .trim()
        .replace(/^"(.*)"$/, '$1')
        .trim(),
    );
    if (header === null) {
      header = fields.map((f) => f.toLowerCase());
      if (!header.includes('serial'))
        throw invalid(`${file}:${i + 1}: the header row must name a "serial" column, found ${JSON.stringify(line)}`);
      return;
    }
    if (fields.length !== header.length) throw invalid(`${file}:${i + 1}: expected ${header.length} fields, found ${fields.length}`);
    const get = (name: string): string | undefined => {
      const k = header!.indexOf(name);
      return k < 0 ? undefined : fields[k];
    };
    try {
      const mac = get('mac');
      if (mac) normalizeMac(mac);
      out.push({ serial: checkSerial(get('serial') ?? ''), ...(mac ? { mac } : {}) });
    } catch (err) {
      throw invalid(`${file}:${i + 1}: ${(err as Error).message}`);
    }
  });
  if (header === null) throw invalid(`${file}: empty (expected a header row with a "serial" column)`);
  return out;
}
