/** SIGHUP applies only hot keys; restart-required changes are named and the running values kept. */
import test from 'ava';
import { checkAgentSettings } from '../../agent/device/settings.js';
import { hotReloadable, restartRequiredChanges } from '../../agent/device/reload-plan.js';

const base = {
  identity_file: '/etc/peerlink/identity.toml',
  server: { host: 'a.example', udp_port: 7400 },
  dial: { max_concurrent: 4 },
  services: { http: '127.0.0.1:80' },
};

test('hot keys apply; restart-required keys are reported and kept at their running value', (t) => {
  const running = checkAgentSettings(base, '/f.toml');
  const next = checkAgentSettings(
    {
      ...base,
      log_level: 'debug',
      server: { host: 'b.example', udp_port: 7401, keep_idle_ms: 0 },
      dial: { max_concurrent: 8 },
      reverse: { port_mapping: 'off' },
      services: { http: '127.0.0.1:80', ssh: '127.0.0.1:22' },
    },
    '/f.toml',
  );
  t.deepEqual(restartRequiredChanges(running, next), [
    'log_level',
    'server.host',
    'server.udp_port',
    'server.server_name',
    'reverse.port_mapping',
  ]);
  const applied = hotReloadable(running, next);
  t.is(applied.server.host, 'a.example');
  t.is(applied.server.keepIdleMs, 0, 'server.keep_idle_ms is hot (the kept connection, kept-connection.ts)');
  t.is(applied.logLevel, 'info');
  t.is(applied.reverse.portMapping, 'auto');
  t.is(applied.dial.maxConcurrent, 8);
  t.deepEqual([...applied.services.keys()], ['http', 'ssh']);
  t.deepEqual(restartRequiredChanges(running, running), []);
});
