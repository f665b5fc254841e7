/**
 * TCP hole punching: where both NATs map endpoint-independently and neither side can take an
 * unsolicited connection (no UPnP, no public address), the two ends connect from the ports their
 * rendezvous connections used and the crossing SYNs open one TCP connection. Without it these
 * cells went through the relay (the NAT lab's matrix before this strategy).
 */
import { runCell } from '../../scripts/lab/cell.js';
import type { NatKind } from '../../scripts/lab/nat.js';
import { labTest } from '../helpers/lab-test.js';

const CASES: readonly { client: NatKind; device: NatKind }[] = [
  { client: 'port-restricted', device: 'port-restricted' },
  { client: 'double', device: 'double' },
];

labTest(
  'client behind a carrier-grade NAT whose inner router offers UPnP (useless there): the failed mapping does not hold the client up, and the punch connects',
  async (t) => {
    // miniupnpd on the inner router refuses (its WAN address is the CGN's private one). This cell
    // used to hang the client: removing the refused gateway's mappings waited without a bound.
    const r = await runCell({
      client: { nat: 'double' },
      device: { nat: 'port-restricted' },
      upnp: 'igd2',
      upnpOn: 'client',
      peerTimeoutMs: 10_000,
    });
    t.log(`connected in ${r.connectMs} ms via ${r.path}; ${r.clientMapping}`);
    t.true(r.connected, r.error ?? '');
    t.is(r.path, 'TCP hole punch');
  },
);

for (const c of CASES) {
  labTest(`client behind ${c.client}, device behind ${c.device}, no UPnP: connected by a TCP hole punch, not the relay`, async (t) => {
    const r = await runCell({ client: { nat: c.client }, device: { nat: c.device }, upnp: 'none', peerTimeoutMs: 10_000 });
    t.log(`connected in ${r.connectMs} ms via ${r.path}`);
    t.true(r.directRequired, 'the traversal target requires a direct path here');
    t.true(r.connected, r.error ?? '');
    t.is(r.path, 'TCP hole punch');
    t.true(r.bytesVerified > 0);
  });
}
