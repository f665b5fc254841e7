/** Send datagrams from inside a lab namespace (the udp-sender program run there); resolves with how many left. */
import { join } from 'node:path';
import { DIST } from '../lib/program.js';
import { inNs } from './exec.js';

export interface SendDatagramsOptions {
  readonly ns: string;
  readonly to: { readonly address: string; readonly port: number };
  readonly datagrams: readonly Buffer[];
  /** Pause after each datagram. */
  readonly gapMs?: number;
}

export async function sendDatagrams(o: SendDatagramsOptions): Promise<number> {
  const program = join(DIST, 'scripts', 'lab', 'udp-sender.js');
  const out = await inNs(
    o.ns,
    [process.execPath, program, o.to.address, String(o.to.port), String(o.gapMs ?? 0)],
    o.datagrams.map((d) => d.toString('hex')).join('\n') + '\n',
  );
  const sent = (JSON.parse(out.trim()) as { sent: number }).sent;
  if (sent !== o.datagrams.length) throw new Error(`lab: sent ${sent} of ${o.datagrams.length} datagrams from ${o.ns}`);
  return sent;
}
