/**
 * The two-node suite, run against one redis-server (test/server/two-nodes.spec.ts) and against a
 * Redis Cluster (test/server/two-nodes-cluster.spec.ts). Two real server nodes sharing Redis; the real agent registered with node 1.
 * A client asking node 2 is connected: node 2 routes the request to node 1, which notifies the
 * device through the mapping it registered (its NAT would drop anything else); the device attaches
 * at node 1, which forwards the request held by node 2 and sends the verdict back. One request ID
 * follows the connection through both nodes' logs. Last, the operator's deny list (issue 19):
 * shared through Redis, enforced by both nodes within seconds, lifted again; then one identity
 * generation denied alone, while the same ID provisioned again (generation 1) is admitted.
 */
import test from 'ava';
import { redisAvailable, redisSerialTest } from './redis-test.js';
import { createHash, randomBytes } from 'node:crypto';
import { freePort } from '../../scripts/lib/free-port.js';
import { PROGRAMS } from '../../scripts/lib/program.js';
import type { RedisCluster } from '../../scripts/lib/redis-cluster.js';
import type { RedisProcess } from '../../scripts/lib/redis-process.js';
import { echoService, sharedScope } from './flow.js';
import { httpGet, sample, startTwoNodes, type TwoNodes } from './multi-node.js';
import { runNode, runNodeStdio } from './run-process.js';
import { waitUntilAsync } from './deny.js';
import { createSocket } from 'node:dgram';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startProgram } from '../../scripts/lib/program.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { encodeRegister, parseUdpPacket, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import { UDP_TYPE_NOTIFY } from '../../agent/protocol/constants.js';
import type { RemoteInfo } from 'node:dgram';
import type { RecordingUdp } from './harness.js';
import { registerThroughCookie } from './udp-register.js';

const EXIT_DEVICE_DENIED = 26;
/** "Within seconds": the nodes poll the shared list's change counter every second (DENY_POLL_MS). */
const DENY_ENFORCED_WITHIN_MS = 5_000;

/** Registers the suite's tests; `startStore` starts the Redis (or cluster) the nodes share. */
export function twoNodesSuite(label: string, startStore: () => Promise<RedisProcess | RedisCluster>): void {
  const ctx = sharedScope();
  let redis: RedisProcess | RedisCluster;
  let f: TwoNodes;

  test.before(async () => {
    if (!redisAvailable) return;
    redis = await startStore();
    ctx.teardown(() => redis.stop());
    const echo = await echoService(ctx);
    // The patent's dial and the relay only: on loopback the reverse port would win the relay test's
    // race (the reverse and punch paths across nodes are covered by the NAT lab's two-node cells).
    // Node 2 takes registrations over IPv6 too (the dual-stack spec registers a device's IPv6 mapping there).
    f = await startTwoNodes(ctx, { redis, services: { echo: `127.0.0.1:${echo.port}` }, directDialOnly: true, node2UdpHost: '::' });
  });
  test.after.always(() => ctx.close());

  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const withRequest = (lines: readonly Record<string, unknown>[], id: string): string[] =>
    lines.filter((l) => l.requestId === id).map((l) => String(l.msg));

  redisSerialTest(
    `${label}: device registered with node 1, client asks node 2: connected, data verified, one request ID across both nodes`,
    async (t) => {
      const data = randomBytes(256 * 1024);
      const r = await runNodeStdio(PROGRAMS.client, f.clientArgs(1, 'echo', ['--stdio']), data, (kill) => t.teardown(kill));
      t.is(r.code, 0, r.stderr);
      t.is(r.sha256, sha(data));
      t.regex(r.stderr, /connected directly/);

      const received = f.nodes[1].lines.find((l) => l.msg === 'S203 connection request received');
      t.truthy(received, 'node 2 took the request');
      const id = String(received!.requestId);
      t.deepEqual(
        withRequest(f.nodes[1].lines, id).filter((m) => /^S20/.test(m)),
        [
          'S203 connection request received',
          'S204 device found in the equipment list',
          'S205 request routed to the node holding the device, which notifies it',
          'S206 device connected to another node, which forwards the request',
          'S207 device verdict relayed to the client',
        ],
      );
      t.deepEqual(
        withRequest(f.nodes[0].lines, id).filter((m) => /^S20/.test(m)),
        [
          'S205 notification sent for a request held by another node',
          'S206 device connected over TLS for a request held by another node; forwarding the request',
          'S207 device verdict sent to the node holding the client',
        ],
      );
      const routed = f.nodes[1].lines.find((l) => l.requestId === id && typeof l.msg === 'string' && l.msg.startsWith('S205'));
      t.is(routed?.node, 'node-2', 'log lines name the node they come from');
      const m2 = (await httpGet(f.metricsPorts[1], '/metrics')).body;
      t.is(sample(m2, /^peerlink_connection_requests_total\{outcome="connected",node="node-2"\}$/), 1);
      t.is(sample(m2, /^peerlink_cross_node_total\{event="routed_to_owner",node="node-2"\}$/), 1);
      const m1 = (await httpGet(f.metricsPorts[0], '/metrics')).body;
      t.is(sample(m1, /^peerlink_cross_node_total\{event="device_attached_for_other_node",node="node-1"\}$/), 1);
      t.is(sample(m1, /^peerlink_registered_devices\{node="node-1"\}$/), 1);
      t.is(sample(m2, /^peerlink_registered_devices\{node="node-2"\}$/), 0);
      t.true((sample(m1, /^peerlink_notification_round_trip_seconds_count/) ?? 0) >= 1);
    },
  );

  redisSerialTest(`${label}: client asks node 1, where the device registered: connected without leaving the node`, async (t) => {
    const data = randomBytes(64 * 1024);
    const r = await runNodeStdio(PROGRAMS.client, f.clientArgs(0, 'echo', ['--stdio']), data, (kill) => t.teardown(kill));
    t.is(r.code, 0, r.stderr);
    t.is(r.sha256, sha(data));
  });

  redisSerialTest(
    `${label}: relayed across nodes: the device cannot dial the client, joins the relay at its node, which bridges to the client's node`,
    async (t) => {
      const closedPort = await freePort();
      const data = randomBytes(256 * 1024);
      const r = await runNodeStdio(
        PROGRAMS.client,
        f.clientArgs(1, 'echo', ['--stdio', '--advertise-port', String(closedPort)]),
        data,
        (kill) => t.teardown(kill),
      );
      t.is(r.code, 0, r.stderr);
      t.is(r.sha256, sha(data));
      t.regex(r.stderr, /relayed via server/);
      const bridged = f.nodes[0].lines.find(
        (l) => l.msg === 'relay session bridged to the node holding the client (end-to-end encrypted; ciphertext only)',
      );
      t.truthy(bridged, 'node 1 bridged the device to node 2');
      t.truthy(
        f.nodes[1].lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('relay session paired')),
        'node 2 paired client and bridge',
      );
      t.is(sample((await httpGet(f.metricsPorts[0], '/metrics')).body, /^peerlink_relay_bridged_total/), 1);
    },
  );

  redisSerialTest(`${label}: an unknown device is unknown at every node (exit 10)`, async (t) => {
    const args = f.clientArgs(1, 'echo', ['--stdio']).map((a) => (a === f.setup.equipmentId ? 'NO-SUCH-DEVICE' : a));
    const r = await runNode(PROGRAMS.client, args);
    t.is(r.code, 10, r.stderr);
    t.regex(r.stderr, /PEERLINK_ERR_UNKNOWN_DEVICE/);
  });

  redisSerialTest(`${label}: health endpoints answer ok while Redis is up`, async (t) => {
    for (const port of f.metricsPorts) {
      const h = await httpGet(port, '/healthz');
      t.is(h.status, 200);
      t.like(JSON.parse(h.body), { status: 'ok', backend: 'redis' });
    }
  });

  redisSerialTest(
    `${label}: a device's IPv4 mapping at node 1 and IPv6 mapping at node 2: a request at either node wakes it over both families`,
    async (t) => {
      const id = f.setup.equipmentId;
      const identity = await loadIdentity(f.setup.identityFile);
      // The device's IPv6 side, registered with node 2 from ::1 (through the cookie, as the registrar does).
      const sock = createSocket({ type: 'udp6', ipv6Only: true });
      const received: { msg: Buffer; from: RemoteInfo }[] = [];
      sock.on('message', (msg, from) => received.push({ msg, from }));
      await new Promise<void>((resolve) => sock.bind(0, '::1', () => resolve()));
      t.teardown(() => sock.close());
      const v6: RecordingUdp = {
        socket: sock,
        port: sock.address().port,
        received,
        send: (buf, to) => new Promise((resolve, reject) => sock.send(buf, to.port, '::1', (err) => (err ? reject(err) : resolve()))),
        bytesReceived: () => received.reduce((n, r) => n + r.msg.length, 0),
      };
      await registerThroughCookie(v6, { port: f.udpPorts[1] }, id, identity.registrationKey);
      const notified = (requestId: string): boolean =>
        received.some(({ msg }) => {
          try {
            const p = parseUdpPacket(msg).packet;
            return p.type === UDP_TYPE_NOTIFY && p.requestId.toString('hex').startsWith(requestId);
          } catch {
            return false;
          }
        });
      for (const n of [0, 1] as const) {
        const data = randomBytes(16 * 1024);
        // The real agent (IPv4, node 1) answers; the IPv6 mapping at node 2 must be notified as well.
        const r = await runNodeStdio(PROGRAMS.client, f.clientArgs(n, 'echo', ['--stdio']), data, (kill) => t.teardown(kill));
        t.is(r.code, 0, `request at node ${n + 1}: ${r.stderr}`);
        t.is(r.sha256, sha(data));
        const asked = f.nodes[n].lines.filter((l) => l.msg === 'S203 connection request received').at(-1);
        const requestId = String(asked!.requestId);
        // A node holding one of the device's kept connections (issue 15; the device attaches at node 1
        // only, and keeps up to KEPT_PER_DEVICE there) wakes it over that instead: no notification is needed.
        const overKept = f.nodes[n].lines.some(
          (l) =>
            l.requestId === requestId && typeof l.msg === 'string' && l.msg.startsWith("S205 wake sent over the device's kept connection"),
        );
        if (overKept) {
          t.is(n, 0, 'only node 1 holds kept connections of the device');
          continue;
        }
        await waitUntilAsync(async () => notified(requestId), `node 2 to notify the IPv6 mapping of request ${requestId}`, 5_000);
        t.true(notified(requestId), `request at node ${n + 1}: the IPv6 mapping was notified`);
      }
    },
  );

  // Last: it denies the suite's device for a while (and lets it back in at the end).
  redisSerialTest(
    `${label}: deny add at node 1 is enforced by both nodes within seconds (DEVICE_DENIED, registrations unanswered); deny remove restores service`,
    async (t) => {
      const id = f.setup.equipmentId;
      const connectVia = (n: 0 | 1) => runNode(PROGRAMS.client, f.clientArgs(n, 'echo', ['--stdio']));
      const deniedAt = async (port: number): Promise<number | undefined> =>
        sample((await httpGet(port, '/metrics')).body, /^peerlink_denied_devices\{/);
      t.is((await connectVia(1)).code, 0, 'before: served through the other node');

      const t0 = Date.now();
      const add = await runNode(PROGRAMS.server, ['deny', 'add', id, '--config', f.setup.serverConfig]);
      t.is(add.code, 0, add.stderr);
      t.regex(add.stdout, /denied/);
      // From the moment the change is in Redis (the CLI returned): the nodes' part.
      const t1 = Date.now();
      for (const port of f.metricsPorts)
        await waitUntilAsync(async () => (await deniedAt(port)) === 1, 'the node to enforce the list', DENY_ENFORCED_WITHIN_MS);
      t.log(`both nodes enforce the new entry ${Date.now() - t1} ms after deny add returned (${t1 - t0} ms the command itself)`);
      for (const n of [0, 1] as const) {
        const r = await connectVia(n);
        t.is(r.code, EXIT_DEVICE_DENIED, `node ${n + 1}: ${r.stderr}`);
        t.regex(r.stderr, /deny list/);
      }
      const m1 = (await httpGet(f.metricsPorts[0], '/metrics')).body;
      t.true((sample(m1, /^peerlink_connection_requests_total\{.*outcome="device_denied"/) ?? 0) >= 1);
      // The device keeps registering with node 1 and gets no answer.
      await waitUntilAsync(
        async () =>
          (sample((await httpGet(f.metricsPorts[0], '/metrics')).body, /^peerlink_registrations_total\{.*outcome="denied"/) ?? 0) >= 1,
        'a registration of the denied device to be dropped',
        40_000,
      );

      const list = await runNode(PROGRAMS.server, ['deny', 'list', '--config', f.setup.serverConfig]);
      t.is(list.stdout.trim(), id);
      const rm = await runNode(PROGRAMS.server, ['deny', 'remove', id, '--config', f.setup.serverConfig]);
      t.is(rm.code, 0, rm.stderr);
      for (const port of f.metricsPorts)
        await waitUntilAsync(async () => (await deniedAt(port)) === 0, 'the node to drop the entry', DENY_ENFORCED_WITHIN_MS);
      // Registered again (its next registration is answered), so served again.
      await waitUntilAsync(async () => (await connectVia(1)).code === 0, 'the device to be served again', 40_000);
      t.pass();
    },
  );

  // After the deny test: the leaked generation (the fixture's agent, generation 0) denied alone.
  redisSerialTest(
    `${label}: one identity generation denied (ID@0): refused at both nodes, while the ID provisioned again (generation 1, new keys) is admitted; the leaked key cannot pose as the new generation`,
    async (t) => {
      const { equipmentId: id, dir } = f.setup;
      const metrics = async (n: 0 | 1): Promise<string> => (await httpGet(f.metricsPorts[n], '/metrics')).body;
      // The factory provisions the appliance again: same ID, generation 1, new keys and label password.
      const identity1 = join(dir, 'identity-gen1.toml');
      const prov = await runNode(PROGRAMS.provision, [
        'device',
        '--id',
        id,
        '--generation',
        '1',
        '--master-key',
        join(dir, 'registration-master.key'),
        '--ca-cert',
        f.setup.caFile,
        '--out',
        identity1,
      ]);
      t.is(prov.code, 0, prov.stderr);
      const password1File = join(dir, 'password-gen1.txt');
      await writeFile(password1File, `${/password: (\S+)/.exec(prov.stdout)![1]}\n`);
      await chmod(password1File, 0o600);

      const add = await runNode(PROGRAMS.server, ['deny', 'add', `${id}@0`, '--config', f.setup.serverConfig]);
      t.is(add.code, 0, add.stderr);
      for (const port of f.metricsPorts)
        await waitUntilAsync(
          async () => sample((await httpGet(port, '/metrics')).body, /^peerlink_denied_devices\{/) === 1,
          'the node to enforce the list',
          DENY_ENFORCED_WITHIN_MS,
        );
      for (const n of [0, 1] as const) {
        const r = await runNode(PROGRAMS.client, f.clientArgs(n, 'echo', ['--stdio']));
        t.is(r.code, EXIT_DEVICE_DENIED, `generation 0 at node ${n + 1}: ${r.stderr}`);
      }

      // The leaked file's key cannot register as generation 1: the tag does not verify, nothing is answered.
      const leaked = await loadIdentity(f.setup.identityFile);
      const badBefore = sample(await metrics(0), /^peerlink_registrations_total\{.*outcome="bad_credential"/) ?? 0;
      const sock = createSocket('udp4');
      t.teardown(() => sock.close());
      let answered = false;
      sock.on('message', () => (answered = true));
      const forged = encodeRegister(
        { equipmentId: id, generation: 1, timestampMs: Date.now(), nonce: Buffer.alloc(REGISTER_NONCE_BYTES, 7) },
        leaked.registrationKey,
      );
      await new Promise<void>((resolve, reject) =>
        sock.send(forged, f.setup.udpPort, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
      );
      await waitUntilAsync(
        async () => (sample(await metrics(0), /^peerlink_registrations_total\{.*outcome="bad_credential"/) ?? 0) > badBefore,
        'the forged registration to be dropped',
        5_000,
      );
      await new Promise((r) => setTimeout(r, 300));
      t.false(answered, 'no answer to a registration of generation 1 under the leaked key');

      // Generation 1's agent (its own identity and state) registers with node 1 and is served through node 2.
      const config1 = join(dir, 'agent-gen1.toml');
      await writeFile(
        config1,
        (await readFile(f.setup.agentConfig, 'utf8'))
          .replace('identity_file = "identity.toml"', 'identity_file = "identity-gen1.toml"')
          .replace('state_dir = "state"', 'state_dir = "state-gen1"'),
      );
      const agent1 = startProgram('agent', ['--config', config1]);
      t.teardown(() => agent1.stop().then(() => undefined));
      await agent1.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));
      const newArgs = f.clientArgs(1, 'echo', ['--stdio']).map((a) => (a === f.setup.passwordFile ? password1File : a));
      await waitUntilAsync(
        async () => (await runNode(PROGRAMS.client, newArgs)).code === 0,
        'generation 1 to be served through node 2',
        20_000,
      );
      const data = randomBytes(64 * 1024);
      const r = await runNodeStdio(PROGRAMS.client, newArgs, data, (kill) => t.teardown(kill));
      t.is(r.code, 0, r.stderr);
      t.is(r.sha256, sha(data));
      // (Relayed across nodes under generation 1: not checked here since the merge of main 74ecd9e, whose relay
      // share per device is then held by this test's earlier offers; see the report of branch i19-port.)
      // The leaked generation keeps registering, unanswered.
      const deniedBefore = sample(await metrics(0), /^peerlink_registrations_total\{.*outcome="denied"/) ?? 0;
      await waitUntilAsync(
        async () => (sample(await metrics(0), /^peerlink_registrations_total\{.*outcome="denied"/) ?? 0) > deniedBefore,
        'a registration of generation 0 to be dropped',
        40_000,
      );

      await agent1.stop();
      const rm = await runNode(PROGRAMS.server, ['deny', 'remove', `${id}@0`, '--config', f.setup.serverConfig]);
      t.is(rm.code, 0, rm.stderr);
    },
  );
}
