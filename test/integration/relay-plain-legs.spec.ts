/**
 * The relay's plain legs (issue 15): client and agent join without TLS to the server and run the
 * end-to-end channel on the socket itself. A server with `relay.plain_legs = false` answers a leg
 * as a server from before them does (as a failed TLS handshake): both fall back to TLS joins.
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { freePort } from '../../scripts/lib/free-port.js';
import { echoService, startFlow } from '../helpers/flow.js';
import { httpGet, sample } from '../helpers/multi-node.js';
import { runNodeStdio } from '../helpers/run-process.js';

for (const plainLegs of [true, false]) {
  test(`relayed with plain_legs = ${plainLegs}: ${plainLegs ? 'both sides join on plain legs' : 'both fall back to TLS joins'}, the bytes arrive intact`, async (t) => {
    const echo = await echoService(t);
    const metricsPort = await freePort();
    const flow = await startFlow(t, {
      services: { echo: `127.0.0.1:${echo.port}` },
      directDialOnly: true,
      serverExtra: `[metrics]\nenabled = true\nhost = "127.0.0.1"\nport = ${metricsPort}\n[relay]\nplain_legs = ${plainLegs}`,
    });
    const data = randomBytes(1024 * 1024);
    const r = await runNodeStdio(
      PROGRAMS.client,
      flow.clientArgs('echo', ['--stdio', '--advertise-port', String(await freePort())]),
      data,
      (kill) => t.teardown(kill),
    );
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /relayed via server/);
    t.is(r.sha256, createHash('sha256').update(data).digest('hex'));
    const m = (await httpGet(metricsPort, '/metrics')).body;
    t.is(sample(m, /^peerlink_relay_legs_total\{outcome="joined"/), plainLegs ? 2 : 0);
    t.is(sample(m, /^peerlink_relay_legs_total\{outcome="refused"/), 0);
    // Off, each leg's first frame went to TLS and failed there, as at a server from before legs.
    t.is(sample(m, /^peerlink_tls_connections_dropped_total\{reason="handshake_failed"/), plainLegs ? 0 : 2);
  });
}
