/**
 * The cells where the patent's flow must work, across real NAPT routers: the client's port is
 * reachable (the client maps it itself through UPnP IGD or NAT-PMP, or it is a public host) and
 * the device is behind any NAT. Each also proves the registration crossed the NAT: the server's list holds router B's
 * public address, never the device's private one.
 */
import { runCell } from '../../scripts/lab/cell.js';
import type { NatKind } from '../../scripts/lab/nat.js';
import { ADDR } from '../../scripts/lab/topology.js';
import type { UpnpKind } from '../../scripts/lab/upnp.js';
import { labTest } from '../helpers/lab-test.js';

const CASES: readonly { client: NatKind; device: NatKind; upnp: UpnpKind }[] = [
  { client: 'port-restricted', device: 'port-restricted', upnp: 'igd2' },
  { client: 'port-restricted', device: 'symmetric', upnp: 'igd2' },
  { client: 'port-restricted', device: 'full-cone', upnp: 'igd1' },
  { client: 'symmetric', device: 'double', upnp: 'natpmp' },
  { client: 'none', device: 'port-restricted', upnp: 'none' },
];

for (const c of CASES) {
  labTest(
    `client ${c.client} (${c.upnp} mapping), device behind ${c.device}: the device dials the client and bytes arrive intact`,
    async (t) => {
      // The patent's own path: the other strategies (which would race it) are off here.
      const r = await runCell({
        client: { nat: c.client },
        device: { nat: c.device },
        upnp: c.upnp,
        upnpOn: 'client',
        strategies: 'patent',
      });
      t.log(`connected in ${r.connectMs} ms; device registered as ${r.registeredAs}; client mapping ${r.clientMapping}`);
      t.is(r.error, null);
      t.true(r.connected);
      t.is(r.path, 'device dialled the client');
      t.true(r.bytesVerified > 0);
      // The registration crossed the NAT: the list holds the public side, not 192.168.1.3.
      t.true(r.registeredAs.startsWith(`${r.devicePublicAddress}:`), r.registeredAs);
      t.false(r.registeredAs.startsWith(ADDR.device));
      // Where the client's router offers UPnP or NAT-PMP, the client mapped its own port.
      // IGD v1 and v2 through UPnP, NAT-PMP where the gateway offers only that.
      if (c.upnp !== 'none' && c.client !== 'none')
        t.is(r.clientMapping, `client mapped it (${c.upnp === 'natpmp' ? 'natpmp' : 'upnp'}): 4.17.168.2:5000`);
    },
  );
}
