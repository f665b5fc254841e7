/**
 * The device's kept attach connection across real NATs (issue 15): a second request is woken over
 * the connection the device kept after the first (no UDP notification, no new TLS), and still
 * connects by a TCP hole punch: the device punches from that connection's local port, whose NAT
 * mapping the server observed (and which the kept connection holds open meanwhile).
 */
import { createHash, randomBytes } from 'node:crypto';
import { CLIENT_PORT, pathOf, runCell, runClient, SERVER_TLS_PORT, type ClientRun } from '../../scripts/lab/cell.js';
import { ADDR } from '../../scripts/lab/topology.js';
import { labTest } from '../helpers/lab-test.js';

labTest('a request woken over the kept connection connects by a TCP hole punch from its port (port-restricted NATs)', async (t) => {
  const payload = randomBytes(64 * 1024);
  let second: ClientRun | null = null;
  let wokenOverKept = 0;
  let notifiedOverUdp = 0;
  const r = await runCell({
    client: { nat: 'port-restricted' },
    device: { nat: 'port-restricted' },
    upnp: 'none',
    peerTimeoutMs: 10_000,
    afterConnect: async ({ lab, setup, server }) => {
      const notified = (): number => server.lines.filter((l) => l.msg === 'S205 notification sent to the device mapping').length;
      const before = notified();
      second = await runClient(
        lab.client.host,
        [
          'connect',
          setup.equipmentId,
          '--server',
          `${ADDR.server}:${SERVER_TLS_PORT}`,
          '--ca',
          setup.caFile,
          '--password-file',
          setup.passwordFile,
          '--service',
          'echo',
          '--stdio',
          '--accept',
          `0.0.0.0:${CLIENT_PORT}`,
          '--peer-timeout-ms',
          '10000',
          '--log-level',
          'info',
        ],
        payload,
        30_000,
      );
      wokenOverKept = server.lines.filter((l) => l.msg === "S205 wake sent over the device's kept connection").length;
      notifiedOverUdp = notified() - before;
    },
  });
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'TCP hole punch', 'the first request (notified over UDP, as in the patent)');
  const s = second as ClientRun | null;
  t.truthy(s);
  t.is(wokenOverKept, 1, 'the second request woke the device over its kept connection');
  t.is(notifiedOverUdp, 0, 'and was not notified over UDP');
  t.is(s?.code, 0, s?.stderr);
  t.is(s?.stdoutSha, createHash('sha256').update(payload).digest('hex'), 'the bytes came back');
  t.is(pathOf(s?.stderr ?? ''), 'TCP hole punch', 'the second request connected by a hole punch too');
});
