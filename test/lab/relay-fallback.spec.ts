/**
 * Where no direct path can exist (symmetric NAT on both sides, no UPnP: every new destination gets a
 * new random port, so neither a dial, a reverse dial nor a hole punch can meet), both ends meet at
 * the server's relay, with the end-to-end channel inside it. The device starts the relay
 * relay_after_ms after its verdict while its direct attempts go on, so the fallback is bounded; with the
 * server's probe port it knows its NAT maps per destination and, the client taking nothing in, starts at once.
 */
import { runCell } from '../../scripts/lab/cell.js';
import { RELAY_AFTER_MS } from '../../agent/protocol/constants.js';
import type { LogLine } from '../../scripts/lib/program.js';
import { labTest } from '../helpers/lab-test.js';

labTest('symmetric NAT on both sides, no UPnP: relayed via the server, the relay started after relay_after_ms', async (t) => {
  const agentLines: LogLine[] = [];
  const r = await runCell({
    client: { nat: 'symmetric' },
    device: { nat: 'symmetric' },
    upnp: 'none',
    peerTimeoutMs: 10_000,
    onLine: (who, l) => who === 'agent' && agentLines.push(l),
  });
  t.log(`connected in ${r.connectMs} ms via ${r.path}`);
  t.false(r.directRequired, 'the target allows the relay here');
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'relayed via server');
  t.true(r.bytesVerified > 0);
  t.true(r.registeredAs.startsWith(`${r.devicePublicAddress}:`), 'the device was registered through its NAT');
  // When the relay began, from the agent's own clock: not before relay_after_ms (the direct paths'
  // head start), and not after the direct-dial budget (the bound a user waits at most).
  const verdict = agentLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('S207 request authorised'));
  const relay = agentLines.find((l) => l.msg === 'meeting the client at the relay');
  t.truthy(verdict && relay, 'the agent logged its verdict and the start of the relay');
  const startedAfterMs = Number(relay!.time) - Number(verdict!.time);
  t.log(`relay started ${startedAfterMs} ms after the verdict`);
  t.true(startedAfterMs >= RELAY_AFTER_MS - 50, `${startedAfterMs} ms`);
});

labTest('symmetric NAT on both sides with the server probe port: no direct path can come, the relay starts at once', async (t) => {
  const agentLines: LogLine[] = [];
  const r = await runCell({
    client: { nat: 'symmetric' },
    device: { nat: 'symmetric' },
    upnp: 'none',
    probe: true,
    peerTimeoutMs: 10_000,
    onLine: (who, l) => who === 'agent' && agentLines.push(l),
  });
  t.log(`connected in ${r.connectMs} ms via ${r.path}`);
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'relayed via server');
  t.true(r.bytesVerified > 0);
  // The agent learnt its NAT's mapping from the probe port, the client hinted that it takes nothing
  // in (agent/paths/relay-hint.ts), so the relay began with the verdict, not relay_after_ms later.
  t.truthy(agentLines.find((l) => l.msg === 'NAT mapping behaviour learnt (server probe port)' && l.behaviour === 'symmetric'));
  const verdict = agentLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('S207 request authorised'));
  const relay = agentLines.find((l) => l.msg === 'meeting the client at the relay');
  t.truthy(verdict && relay, 'the agent logged its verdict and the start of the relay');
  const startedAfterMs = Number(relay!.time) - Number(verdict!.time);
  t.log(`relay started ${startedAfterMs} ms after the verdict`);
  t.true(startedAfterMs < RELAY_AFTER_MS / 2, `${startedAfterMs} ms`);
});

labTest('port-restricted NAT on both sides with the probe port: the hole punch keeps its head start and connects', async (t) => {
  const agentLines: LogLine[] = [];
  const r = await runCell({
    client: { nat: 'port-restricted' },
    device: { nat: 'port-restricted' },
    upnp: 'none',
    probe: true,
    onLine: (who, l) => who === 'agent' && agentLines.push(l),
  });
  t.log(`connected in ${r.connectMs} ms via ${r.path}`);
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'TCP hole punch');
  t.truthy(agentLines.find((l) => l.msg === 'NAT mapping behaviour learnt (server probe port)' && l.behaviour === 'endpoint-independent'));
  t.falsy(agentLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('no direct path can come')));
});

/** When the agent's relay began after its verdict (its own clock), from its log lines. */
function relayStartedAfterMs(agentLines: readonly LogLine[]): number | null {
  const verdict = agentLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('S207 request authorised'));
  const relay = agentLines.find((l) => l.msg === 'meeting the client at the relay');
  return verdict && relay ? Number(relay.time) - Number(verdict.time) : null;
}

labTest(
  'a symmetric client, a device it cannot reach directly: the client learns its mapping and the first connect starts the relay at once',
  async (t) => {
    const agentLines: LogLine[] = [];
    const clientLines: LogLine[] = [];
    // The device's NAT maps endpoint-independently (it hints nothing itself): only the client's own
    // knowledge (nat/client-mapping.ts) rules the punch out; no gateway, so nothing is reachable.
    const r = await runCell({
      client: { nat: 'symmetric' },
      device: { nat: 'port-restricted' },
      upnp: 'none',
      probe: true,
      peerTimeoutMs: 10_000,
      onLine: (who, l) => (who === 'agent' ? agentLines : who === 'client' ? clientLines : []).push(l),
    });
    t.log(`connected in ${r.connectMs} ms via ${r.path}`);
    t.true(r.connected, r.error ?? '');
    t.is(r.path, 'relayed via server');
    const learnt = clientLines.find((l) => l.msg === 'our NAT mapping behaviour (server probe ports)' && l.behaviour === 'symmetric');
    t.truthy(learnt, 'the client learnt that its NAT maps per destination');
    t.log(`the client's check added ${String(learnt?.waitedMs)} ms to its request`);
    t.truthy(
      agentLines.find((l) => l.msg === 'NAT mapping behaviour learnt (server probe port)' && l.behaviour === 'endpoint-independent'),
    );
    const atOnce = agentLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('no direct path can come'));
    t.regex(String(atOnce?.reason), /the client takes no inbound connection and its NAT maps per destination/);
    const startedAfterMs = relayStartedAfterMs(agentLines);
    t.log(`relay started ${startedAfterMs} ms after the verdict`);
    t.true(startedAfterMs !== null && startedAfterMs < RELAY_AFTER_MS / 2, `${startedAfterMs} ms`);
  },
);

labTest(
  'a symmetric client, a device that maps its reverse port: still direct (the client dials the device), no relay at once',
  async (t) => {
    const agentLines: LogLine[] = [];
    const clientLines: LogLine[] = [];
    const r = await runCell({
      client: { nat: 'symmetric' },
      device: { nat: 'port-restricted' },
      upnp: 'igd2',
      upnpOn: 'device',
      probe: true,
      onLine: (who, l) => (who === 'agent' ? agentLines : who === 'client' ? clientLines : []).push(l),
    });
    t.log(`connected in ${r.connectMs} ms via ${r.path}`);
    t.true(r.connected, r.error ?? '');
    t.is(r.path, 'client dialled the device');
    // The client did learn that it is behind a symmetric NAT (so it hinted it): the device's open port wins anyway.
    t.truthy(clientLines.find((l) => l.msg === 'our NAT mapping behaviour (server probe ports)' && l.behaviour === 'symmetric'));
    t.falsy(agentLines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('no direct path can come')));
  },
);
