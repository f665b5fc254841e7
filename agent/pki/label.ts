/**
 * The printable device label: SVG, 62 mm x 29 mm (a common thermal label size), with the
 * equipment ID, the password as a person types it (groups of four, no look-alike characters)
 * and a QR code of the peerlink:// connect URI (protocol/connect-uri.ts) for a phone app.
 * The label carries the password, so label files are secrets until printed (mode 0600).
 */
import QRCode from 'qrcode';
import { formatConnectUri } from '../protocol/connect-uri.js';

export const LABEL_WIDTH_MM = 62;
export const LABEL_HEIGHT_MM = 29;
/** Medium error correction: survives some scuffing of the printed label. */
const QR_ERROR_CORRECTION = 'M';
/**
 * A fixed mask pattern: choosing the "best" of the eight costs 4x the time of the whole code
 * (~1.6 ms of ~2.1 ms per label here) and any mask decodes; the quiet zone and medium error
 * correction matter more for a printed label.
 */
const QR_MASK_PATTERN = 0;
/** The QR standard's quiet zone, in modules. */
const QR_QUIET_MODULES = 4;

export interface LabelOptions {
  readonly equipmentId: string;
  /** As printed: grouped, e.g. "7KQ2-MZ9T-XH4C-RW8P-3NVB". */
  readonly password: string;
  readonly serial?: string;
  /** Rendezvous server "host:port" to put in the QR code, when the factory knows it. */
  readonly server?: string;
  readonly productName?: string;
}

const escapeXml = (s: string): string => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The QR matrix as one SVG path, horizontal runs of dark modules merged (small files). */
export function qrPath(text: string): { size: number; d: string } {
  const qr = QRCode.create(text, { errorCorrectionLevel: QR_ERROR_CORRECTION, maskPattern: QR_MASK_PATTERN });
  const { size, data } = qr.modules;
  let d = '';
  for (let y = 0; y < size; y++) {
    let x = 0;
    while (x < size) {
      if (!data[y * size + x]) {
        x++;
        continue;
      }
      let run = 1;
      while (x + run < size && data[y * size + x + run]) run++;
      d += `M${x + QR_QUIET_MODULES} ${y + QR_QUIET_MODULES}h${run}v1h-${run}z`;
      x += run;
    }
  }
  return { size: size + 2 * QR_QUIET_MODULES, d };
}

export function renderLabelSvg(o: LabelOptions): { svg: string; uri: string } {
  const uri = formatConnectUri({ equipmentId: o.equipmentId, password: o.password, ...(o.server ? { server: o.server } : {}) });
  const qr = qrPath(uri);
  const qrMm = LABEL_HEIGHT_MM - 2;
  const x = qrMm + 2;
  const lines = [
    `<text x="${x}" y="6" font-size="3.2" font-weight="bold">${escapeXml(o.productName ?? 'peerlink remote access')}</text>`,
    `<text x="${x}" y="11" font-size="2.6">ID</text>`,
    `<text x="${x + 5}" y="11" font-size="3" font-family="monospace">${escapeXml(o.equipmentId)}</text>`,
    ...(o.serial ? [`<text x="${x}" y="15" font-size="2.2">S/N ${escapeXml(o.serial)}</text>`] : []),
    `<text x="${x}" y="20" font-size="2.6">Password</text>`,
    `<text x="${x}" y="25" font-size="3.1" font-family="monospace" font-weight="bold">${escapeXml(o.password)}</text>`,
  ];
  const svg = `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${LABEL_WIDTH_MM}mm" height="${LABEL_HEIGHT_MM}mm" viewBox="0 0 ${LABEL_WIDTH_MM} ${LABEL_HEIGHT_MM}">
<rect width="100%" height="100%" fill="#fff"/>
<svg x="1" y="1" width="${qrMm}" height="${qrMm}" viewBox="0 0 ${qr.size} ${qr.size}" shape-rendering="crispEdges"><path fill="#000" d="${qr.d}"/></svg>
<g font-family="sans-serif" fill="#000">
${lines.join('\n')}
</g>
</svg>
`;
  return { svg, uri };
}
