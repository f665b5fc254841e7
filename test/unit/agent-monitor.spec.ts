/** The monitor: READY=1 on registration (or after the grace period with a reason), STATUS only on change, health = registration loop alive. */
import test from 'ava';
import { Counters } from '../../agent/common/counters.js';
import { AGENT_COUNTERS, type Agent } from '../../agent/device/agent.js';
import { REGISTRAR_COUNTERS, type RegistrarStatus } from '../../agent/device/registrar.js';
import { checkAgentSettings } from '../../agent/device/settings.js';
import { createAgentMonitor } from '../../agent/status/agent-monitor.js';
import { createNotifier } from '../../agent/systemd/notify.js';
import { ManualClock } from '../helpers/manual-clock.js';

type Mapping = { externalHost: string; externalPort: number; via: 'upnp' | 'natpmp' } | null;

function fixture(readyGraceMs = 60_000, portMapping: 'off' | 'auto' = 'off', keepalive: 'fixed' | 'adaptive' = 'fixed') {
  let mapping: Mapping = null;
  const clock = new ManualClock(1_000_000);
  let st: RegistrarStatus = { state: 'starting', publicEndpoint: null, server: null, lastAckMs: null, clockOffsetMs: 0 };
  const registrarCounters = new Counters(REGISTRAR_COUNTERS);
  const agent = {
    status: () => st,
    counters: new Counters(AGENT_COUNTERS),
    registrar: { counters: registrarCounters },
    portMapping: () => mapping,
    reversePort: () => 40000,
  } as unknown as Agent;
  const settings = checkAgentSettings(
    {
      identity_file: 'id.toml',
      server: { host: 'rv.example' },
      keepalive: { mode: keepalive },
      reverse: { port_mapping: portMapping },
      services: { http: '127.0.0.1:80' },
    },
    '/a.toml',
  );
  const sent: string[][] = [];
  const notifier = createNotifier({ env: { NOTIFY_SOCKET: '@x' }, spawnNotify: async (args) => void sent.push([...args]) });
  const monitor = createAgentMonitor({
    agent,
    settings: () => settings,
    equipmentId: 'TV-1',
    configFile: '/a.toml',
    notifier,
    stateFile: null,
    timers: clock,
    readyGraceMs,
    tickMs: 60_000,
  });
  return {
    monitor,
    sent,
    registrarCounters,
    settings,
    clock,
    advance: (ms: number) => clock.advance(ms),
    setStatus: (s: Partial<RegistrarStatus>) => (st = { ...st, ...s }),
    setMapping: (m: Mapping) => (mapping = m),
  };
}

test('READY=1 with the registered status once, then STATUS only when it changes', async (t) => {
  const f = fixture();
  await f.monitor.refresh();
  t.deepEqual(f.sent, [['STATUS=registering with rv.example:7400']]);
  f.setStatus({ state: 'registered', publicEndpoint: { address: '202.204.16.13', port: 41924 } });
  await f.monitor.refresh();
  t.deepEqual(f.sent[1], ['STATUS=registered with rv.example:7400 as 202.204.16.13:41924', 'READY=1']);
  await f.monitor.refresh();
  t.is(f.sent.length, 2, 'nothing new to say');
  f.setStatus({ state: 'unreachable' });
  await f.monitor.refresh();
  t.deepEqual(f.sent[2], ['STATUS=not registered: server rv.example:7400 unreachable (no acknowledgement), retrying']);
  await f.monitor.stop();
});

test('without a registration, READY=1 comes after the grace period with a STATUS saying why', async (t) => {
  const f = fixture(50);
  f.setStatus({ state: 'unreachable' });
  f.monitor.start();
  await f.clock.advance(49);
  t.false(
    f.sent.some((a) => a.includes('READY=1')),
    'not before the grace period',
  );
  await f.clock.advance(1);
  await f.monitor.stop();
  const ready = f.sent.find((a) => a.includes('READY=1'));
  t.truthy(ready);
  t.true(ready!.some((a) => a.startsWith('STATUS=not registered: server rv.example:7400 unreachable')));
});

test('health: fails when the registration loop made no attempt for two intervals plus slack; a failed attempt counts as alive', async (t) => {
  const f = fixture();
  t.true(f.monitor.health().ok);
  await f.advance(2 * f.settings.registration.intervalMs + 16_000);
  const h = f.monitor.health();
  t.false(h.ok);
  t.regex(h.reason ?? '', /registration loop made no attempt/);
  f.registrarCounters.inc('ackTimeouts'); // e.g. no network: still alive, no restart wanted
  t.true(f.monitor.health().ok);
  await f.advance(30_000);
  f.registrarCounters.inc('sent');
  t.true(f.monitor.health().ok);
});

test('health with the adaptive keepalive: a gap up to two maximum intervals is not a dead loop (no watchdog restart)', async (t) => {
  const f = fixture(60_000, 'off', 'adaptive');
  await f.advance(2 * f.settings.registration.intervalMs + 16_000);
  t.true(f.monitor.health().ok, 'a learnt 80 s interval is normal, not a hang');
  await f.advance(2 * f.settings.keepalive.maxIntervalMs);
  t.false(f.monitor.health().ok);
});

test('the port mapping shows in STATUS and the snapshot; a lost one says so', async (t) => {
  const f = fixture(60_000, 'auto');
  f.setStatus({ state: 'registered', publicEndpoint: { address: '202.204.16.13', port: 41924 } });
  f.setMapping({ externalHost: '202.204.16.13', externalPort: 5000, via: 'upnp' });
  await f.monitor.refresh();
  t.is(f.sent.at(-1)?.[0], 'STATUS=registered with rv.example:7400 as 202.204.16.13:41924; port mapping 202.204.16.13:5000 via upnp');
  t.deepEqual(f.monitor.snapshot().portMapping, { state: 'mapped', reversePort: 40000, external: '202.204.16.13:5000', via: 'upnp' });
  f.setMapping(null); // the gateway forgot it; the agent searches again
  await f.monitor.refresh();
  t.is(f.sent.at(-1)?.[0], 'STATUS=registered with rv.example:7400 as 202.204.16.13:41924; no port mapping');
  t.is(f.monitor.snapshot().portMapping?.state, 'none');
  await f.monitor.stop();
});
