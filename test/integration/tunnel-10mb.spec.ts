/** 10 MB each way through the real programs' tunnel, checksummed; throughput vs plain TCP logged. */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { startProgram } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow, waitForStderr } from '../helpers/flow.js';

const PAYLOAD_BYTES = 10 * 1024 * 1024;

/** Send `data` and read back as many bytes; returns the sha256 of what came back and the time. */
function roundTrip(port: number, data: Buffer): Promise<{ sha: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const hash = createHash('sha256');
    let got = 0;
    const s: Socket = connect(port, '127.0.0.1', () => {
      s.end(data);
    });
    s.on('data', (d: Buffer) => {
      hash.update(d);
      got += d.length;
    });
    s.on('close', () =>
      got === data.length
        ? resolve({ sha: hash.digest('hex'), ms: performance.now() - t0 })
        : reject(new Error(`got ${got} of ${data.length} bytes`)),
    );
    s.on('error', reject);
  });
}

test('10 MB each way through the tunnel arrive intact', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const listen = await freePort();
  const client = startProgram('client', flow.clientArgs('echo', ['--listen', `127.0.0.1:${listen}`]));
  t.teardown(() => client.stop().then(() => undefined));
  await waitForStderr(client, /serving/);

  const data = randomBytes(PAYLOAD_BYTES);
  const want = createHash('sha256').update(data).digest('hex');
  const tunnel = await roundTrip(listen, data);
  t.is(tunnel.sha, want);
  const plain = await roundTrip(echo.port, data);
  t.is(plain.sha, want);
  const mbps = (ms: number): string => ((2 * PAYLOAD_BYTES * 8) / (ms / 1000) / 1e6).toFixed(0);
  t.log(`tunnel: ${mbps(tunnel.ms)} Mbit/s, plain TCP: ${mbps(plain.ms)} Mbit/s (ratio ${(plain.ms / tunnel.ms).toFixed(2)})`);

  // A second local connection gets its own tunnel (one request each, like ssh -L).
  const again = await roundTrip(listen, data.subarray(0, 65536));
  t.is(again.sha, createHash('sha256').update(data.subarray(0, 65536)).digest('hex'));
});
