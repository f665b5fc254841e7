#!/usr/bin/env node
/**
 * Run inside a namespace (ip netns exec): `parallel` connections at once to 127.0.0.1:port, then
 * `sequential` one after another, each sending `bytes` and expecting them echoed. Prints one JSON
 * line: how many of each came back whole, and the wall time of the parallel burst.
 * argv: port parallel sequential bytes
 */
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';

const [port, parallel, sequential, bytes] = process.argv.slice(2).map(Number) as [number, number, number, number];

function once(): Promise<boolean> {
  const data = randomBytes(bytes);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const s = connect(port, '127.0.0.1', () => s.end(data));
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => resolve(false));
    s.on('close', () => resolve(Buffer.concat(chunks).equals(data)));
    s.setTimeout(30_000, () => s.destroy());
  });
}

const t0 = performance.now();
const burst = await Promise.all(Array.from({ length: parallel }, () => once()));
const parallelMs = performance.now() - t0;
let sequentialOk = 0;
for (let i = 0; i < sequential; i++) if (await once()) sequentialOk++;
process.stdout.write(`${JSON.stringify({ parallelOk: burst.filter(Boolean).length, parallelMs, sequentialOk })}\n`);
