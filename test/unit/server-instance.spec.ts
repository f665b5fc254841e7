/**
 * `peerlink-server --instance N` (systemd/peerlink-server@.service, one node per core): instance N
 * of one settings file listens on every port + N and names itself redis.node_id + "-N".
 */
import test from 'ava';
import { parse } from 'smol-toml';
import { instanceSettings } from '../../agent/server/instance.js';
import { checkServerSettings } from '../../agent/server/settings.js';

const FILE = '/etc/peerlink/server.toml';
const settings = (extra: string) =>
  checkServerSettings(
    parse(`registration_master_key_file = "m.key"\n[tls]\ncert_file = "c.pem"\nkey_file = "k.pem"\n${extra}`) as Record<string, unknown>,
    FILE,
  );

test('instance N: every port + N (0 stays any), node ID and the TLS address other nodes use + N', (t) => {
  const s = settings(
    '[probe]\nport = 7401\n[metrics]\nenabled = true\nport = 0\n[redis]\ncluster_nodes = ["10.0.0.5:6379"]\nnode_id = "rdv-a"\ntls_address = "10.0.1.7:7443"\n',
  );
  const i = instanceSettings(s, 3, FILE);
  t.is(i.udp.port, 7403);
  t.is(i.tls.port, 7446);
  t.is(i.probe.port, 7404);
  t.is(i.metrics.port, 0);
  t.is(i.redis?.nodeId, 'rdv-a-3');
  t.is(i.redis?.tlsAddress, '10.0.1.7:7446');
  t.deepEqual(i.redis?.clusterNodes, ['10.0.0.5:6379']);
  t.is(instanceSettings(s, 0, FILE).udp.port, 7400);
});

test('a port past 65535 is an error naming the setting', (t) => {
  const s = settings('[udp]\nport = 65535\n');
  const err = t.throws(() => instanceSettings(s, 1, FILE));
  t.regex(err!.message, /udp\.port \+ instance 1 = 65536/);
});
