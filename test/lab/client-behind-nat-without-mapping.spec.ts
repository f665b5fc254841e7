/**
 * The patent's limit, measured: a client behind a NAT with no port mapping cannot take the
 * device's connection. The device is notified and accepts, but its dial is dropped at router A;
 * the client reports PEER_TIMEOUT. (The NAT traversal issue turns this cell into a success.)
 */
import { runCell } from '../../scripts/lab/cell.js';
import { labTest } from './lab-test.js';

labTest('client behind a port-restricted NAT without UPnP: the flow fails with PEER_TIMEOUT, not silently', async (t) => {
  const r = await runCell({ client: { nat: 'port-restricted' }, device: { nat: 'port-restricted' }, upnp: 'none', peerTimeoutMs: 2000 });
  t.false(r.connected);
  t.is(r.bytesVerified, 0);
  t.regex(r.error ?? '', /PEERLINK_ERR_PEER_TIMEOUT/);
  t.true(r.registeredAs.startsWith(`${r.devicePublicAddress}:`), 'the device was registered through its NAT');
});
