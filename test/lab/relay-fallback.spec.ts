/**
 * A client behind a NAT with no port mapping cannot take the device's connection (the patent's
 * limit): the device's dial is dropped at router A. The device gives up after its direct-dial
 * budget and both meet at the server's relay, with the end-to-end channel inside it.
 */
import { runCell } from '../../scripts/lab/cell.js';
import { DIRECT_DIAL_TIMEOUT_MS } from '../../agent/device/settings.js';
import { labTest } from './lab-test.js';

/** The relay's own set-up on top of the direct budget: two TLS connections and a handshake. */
const RELAY_SETUP_BUDGET_MS = 2000;

labTest('client behind a port-restricted NAT without UPnP: relayed via the server, within the direct-dial budget', async (t) => {
  const r = await runCell({ client: { nat: 'port-restricted' }, device: { nat: 'port-restricted' }, upnp: 'none', peerTimeoutMs: 10_000 });
  t.log(`connected in ${r.connectMs} ms via ${r.path}`);
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'relayed via server');
  t.true(r.bytesVerified > 0);
  t.true(r.connectMs! <= DIRECT_DIAL_TIMEOUT_MS + RELAY_SETUP_BUDGET_MS, `${r.connectMs} ms`);
  t.true(r.registeredAs.startsWith(`${r.devicePublicAddress}:`), 'the device was registered through its NAT');
});
