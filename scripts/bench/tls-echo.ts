#!/usr/bin/env node
/**
 * A plain TLS echo server (its own process): the baseline of tunnel throughput, with the same
 * certificate and cipher order as the rendezvous server's TLS port. argv: cert.pem key.pem
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:tls';
import { SERVER_TLS_CIPHERS } from '../../agent/server/tls-ciphers.js';

const s = createServer(
  {
    cert: readFileSync(process.argv[2]!),
    key: readFileSync(process.argv[3]!),
    allowHalfOpen: true,
    ciphers: SERVER_TLS_CIPHERS,
    honorCipherOrder: true,
  },
  (c) => {
    c.on('error', () => undefined);
    c.pipe(c);
  },
);
s.listen(0, '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ port: (s.address() as { port: number }).port })}\n`));
process.once('SIGTERM', () => process.exit(0));
