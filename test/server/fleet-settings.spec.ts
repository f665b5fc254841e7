/** The fleet settings ([redis], [limits], [metrics], [shutdown]): defaults, values, and errors that name the key. */
import test from 'ava';
import { parse } from 'smol-toml';
import { ConfigError } from '../../agent/common/errors.js';
import { DEFAULT_LIMITS } from '../../agent/server/server.js';
import { checkServerSettings } from '../../agent/server/settings.js';

const FILE = '/etc/peerlink/server.toml';
const BASE = `registration_master_key_file = "m.key"\n[tls]\ncert_file = "c.pem"\nkey_file = "k.pem"\n`;
const check = (extra: string) => checkServerSettings(parse(BASE + extra) as Record<string, unknown>, FILE);

test('defaults: in memory (no [redis]), default limits, metrics off, 10 s drain', (t) => {
  const s = check('');
  t.is(s.redis, null);
  t.deepEqual(s.limits, DEFAULT_LIMITS);
  t.deepEqual(s.metrics, { enabled: false, host: '127.0.0.1', port: 9464 });
  t.deepEqual(s.shutdown, { graceMs: 10_000 });
});

test('a [redis] table makes the node one of several; limits per minute become per second; 0 disables', (t) => {
  const s = check(
    '[redis]\nurl = "redis://10.0.0.5:6379"\nnode_id = "rdv-1"\n[limits]\nrequests_per_device_per_min = 30\nrequests_per_device_burst = 5\nregistrations_per_source_per_s = 0\n[metrics]\nenabled = true\nport = 0\n',
  );
  t.deepEqual(s.redis, {
    url: 'redis://10.0.0.5:6379',
    clusterNodes: undefined,
    refreshAfterMs: 180_000,
    nodeId: 'rdv-1',
    keyPrefix: 'pl:',
    tlsAddress: undefined,
    username: undefined,
    passwordFile: undefined,
  });
  t.deepEqual(s.limits.requestsPerDevice, { perSecond: 0.5, burst: 5 });
  t.is(s.limits.registrationsPerSource.perSecond, 0);
  t.deepEqual(s.metrics, { enabled: true, host: '127.0.0.1', port: 0 });
});

test('every problem is reported at once, naming the key', (t) => {
  const err = t.throws(
    () =>
      check(
        '[redis]\nurl = "http://x"\nnode_id = "has space"\ncolour = 1\n[limits]\nrequests_per_source_burst = 0\n[metrics]\nport = 70000\n',
      ),
    {
      instanceOf: ConfigError,
    },
  );
  for (const key of ['redis.url', 'redis.node_id', 'colour', 'limits.requests_per_source_burst', 'metrics.port']) {
    t.true(
      err!.problems.some((p) => p.includes(key)),
      `${key} in ${err!.problems.join(' | ')}`,
    );
  }
});

test('[redis] cluster_nodes: the seed nodes of a Redis Cluster, instead of url; refresh_after_ms', (t) => {
  const s = check('[redis]\ncluster_nodes = ["10.0.0.5:6379", "redis-b.internal:6380", "[fd00::7]:6379"]\nrefresh_after_ms = 30000\n');
  t.deepEqual(s.redis?.clusterNodes, ['10.0.0.5:6379', 'redis-b.internal:6380', '[fd00::7]:6379']);
  t.is(s.redis?.url, undefined);
  t.is(s.redis?.refreshAfterMs, 30_000);
  for (const [extra, key] of [
    ['url = "redis://10.0.0.5:6379"\ncluster_nodes = ["10.0.0.5:6379"]', 'redis.url'],
    ['cluster_nodes = []', 'redis.cluster_nodes'],
    ['cluster_nodes = ["10.0.0.5"]', 'redis.cluster_nodes'],
    ['cluster_nodes = "10.0.0.5:6379"', 'redis.cluster_nodes'],
    ['refresh_after_ms = 10', 'redis.refresh_after_ms'],
  ] as const) {
    const err = t.throws(() => check(`[redis]\n${extra.startsWith('refresh') ? 'url = "redis://x:1"\n' : ''}${extra}\n`), {
      instanceOf: ConfigError,
    });
    t.true(
      err!.problems.some((p) => p.includes(key)),
      `${extra}: ${err!.problems.join(' | ')}`,
    );
  }
});

test("[redis] username and password_file: a cluster's password from a file (relative to the settings); with url they go in the URL", (t) => {
  const s = check('[redis]\ncluster_nodes = ["10.0.0.5:6379"]\nusername = "peerlink"\npassword_file = "redis.password"\n');
  t.is(s.redis?.username, 'peerlink');
  t.is(s.redis?.passwordFile, '/etc/peerlink/redis.password');
  for (const [extra, key] of [
    ['url = "redis://10.0.0.5:6379"\npassword_file = "p"', 'redis.password_file'],
    ['url = "redis://10.0.0.5:6379"\nusername = "u"', 'redis.username'],
    ['cluster_nodes = ["10.0.0.5:6379"]\nusername = "has space"', 'redis.username'],
  ] as const) {
    const err = t.throws(() => check(`[redis]\n${extra}\n`), { instanceOf: ConfigError });
    t.true(
      err!.problems.some((p) => p.includes(key)),
      `${extra}: ${err!.problems.join(' | ')}`,
    );
  }
});
