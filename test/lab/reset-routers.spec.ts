/**
 * Issue 14, routers that answer an unsolicited SYN with a reset (OpenWrt's WAN zone): such a
 * reset, passing back through our own router, closes the hole our SYN had just opened, so a punch
 * that pauses after a refusal (it did: 150 ms) never has its hole open when the peer's SYN comes
 * and every cell went through the relay. The punch now sends its next SYN at once after a reset
 * (agent/nat/tcp-punch.ts). The relay is held back here (relay_after_ms) so that the spec checks
 * the punch itself, not how it races the relay; the matrix shows both (`npm run lab -- matrix --inbound reset`).
 */
import { runCell } from '../../scripts/lab/cell.js';
import { labTest } from '../helpers/lab-test.js';

labTest('port-restricted NATs on both sides whose routers reset unsolicited SYNs: connected by a TCP hole punch', async (t) => {
  const r = await runCell({
    client: { nat: 'port-restricted', inbound: 'reset' },
    device: { nat: 'port-restricted', inbound: 'reset' },
    upnp: 'none',
    peerTimeoutMs: 15_000,
    dialExtra: 'relay_after_ms = 12000\ndirect_timeout_ms = 12000',
  });
  t.log(`connected in ${r.connectMs} ms via ${r.path} (routers: ${r.routers})`);
  t.true(r.directRequired);
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'TCP hole punch');
});
