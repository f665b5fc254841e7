/**
 * Two server nodes on two WAN addresses sharing one Redis, across a real NAPT router: the device
 * (behind a port-restricted NAT, which admits only the server address it registered with) is
 * registered with node 1; the client asks node 2; node 2 routes the request to node 1, which
 * notifies the device through its mapping; the connection is made and bytes arrive intact.
 */
import { runTwoNodeCell } from '../../scripts/lab/two-nodes.js';
import { labTest } from '../helpers/lab-test.js';

labTest('device registered with node 1 behind a port-restricted NAT, client asks node 2: connected, bytes intact', async (t) => {
  const r = await runTwoNodeCell({ client: 'none', device: 'port-restricted' });
  t.is(r.client.code, 0, r.client.stderr);
  t.is(r.client.stdoutSha, r.payloadSha);
  t.regex(r.client.stderr, /connected directly/);
  t.true(r.registeredAs.startsWith(`${r.devicePublicAddress}:`), `node 1 holds the NAT's public mapping: ${r.registeredAs}`);
  const [n1, n2] = r.nodes;
  const routed = n2.lines.find((l) => l.msg === 'S205 request routed to the node holding the device, which notifies it');
  t.truthy(routed, 'node 2 routed the request');
  t.is(routed!.deviceNode, 'node-1');
  const notified = n1.lines.find((l) => l.msg === 'S205 notification sent for a request held by another node');
  t.is(notified?.requestId, routed!.requestId, 'one request ID across both nodes');
  t.truthy(n1.lines.find((l) => l.requestId === routed!.requestId && l.msg === 'S207 device verdict sent to the node holding the client'));
  t.falsy(
    n2.lines.find((l) => l.msg === 'S202 device registered'),
    'node 2 never heard from the device itself',
  );
});

labTest(
  'symmetric NATs on both sides (no direct path can exist), client asks node 2: relayed across the two nodes, bytes intact',
  async (t) => {
    const r = await runTwoNodeCell({ client: 'symmetric', device: 'symmetric' });
    t.is(r.client.code, 0, r.client.stderr);
    t.is(r.client.stdoutSha, r.payloadSha);
    t.regex(r.client.stderr, /relayed via server/);
    t.truthy(
      r.nodes[0].lines.find(
        (l) => l.msg === 'relay session bridged to the node holding the client (end-to-end encrypted; ciphertext only)',
      ),
    );
  },
);

labTest(
  'port-restricted NATs on both sides, client asks node 2: the path candidates cross the nodes and the two ends hole-punch',
  async (t) => {
    // The device's attach endpoint reaches node 2 with node 1's verdict (Redis pub/sub), so the client
    // can punch towards it; without that this cell would be relayed.
    const r = await runTwoNodeCell({ client: 'port-restricted', device: 'port-restricted' });
    t.is(r.client.code, 0, r.client.stderr);
    t.is(r.client.stdoutSha, r.payloadSha);
    t.regex(r.client.stderr, /connected directly: TCP hole punch/);
  },
);
