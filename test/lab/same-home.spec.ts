/**
 * Issue 14, one home: the owner's phone on the TV's Wi-Fi connects directly on the LAN (LAN
 * candidates), whether or not the router hairpins; two homes behind one carrier-grade NAT connect
 * directly; and two different homes that both use 192.168.1.0/24 never take a LAN candidate: the
 * nftables counters in the device's and the client's namespaces count no packet to the other
 * home's private address (the same counters count the LAN dial in the same-LAN cell, so they
 * can see one). With IPv6 (dual-stack hosts, the router's /64 on the LAN; IPv6 native beside the
 * carrier-grade NAT) both connect directly over IPv6: no address is translated, so the address the
 * server sees is the host's own and the dial stays on the LAN, or the punch passes two firewalls.
 */
import { runCell, type CellContext } from '../../scripts/lab/cell.js';
import { installCounters, readCounter } from '../../scripts/lab/nft-counter.js';
import { ADDR } from '../../scripts/lab/topology.js';
import { labTest } from '../helpers/lab-test.js';

/** Packets leaving the device host for the client's private address, and the client host for the device's. */
async function countPrivateDials(ctx: CellContext): Promise<void> {
  await installCounters(ctx.lab.device.host, [{ name: 'to_client_lan', hook: 'output', match: `ip daddr ${ADDR.client}` }]);
  await installCounters(ctx.lab.client.host, [{ name: 'to_device_lan', hook: 'output', match: `ip daddr ${ADDR.device}` }]);
}

for (const hairpin of [false, true]) {
  labTest(
    `same LAN, router ${hairpin ? 'hairpins' : 'does not hairpin'}: connected directly on the LAN, not through the server`,
    async (t) => {
      let toClient = -1;
      const r = await runCell({
        homes: 'same-lan',
        client: { nat: 'port-restricted', hairpin },
        device: { nat: 'port-restricted', hairpin },
        upnp: 'none',
        peerTimeoutMs: 10_000,
        beforeConnect: countPrivateDials,
        async afterConnect({ lab }) {
          toClient = (await readCounter(lab.device.host, 'to_client_lan')).packets;
        },
      });
      t.log(`connected in ${r.connectMs} ms via ${r.path}; ${toClient} packets from the device to ${ADDR.client}`);
      t.true(r.directRequired);
      t.true(r.connected, r.error ?? '');
      t.not(r.path, 'relayed via server');
      if (!hairpin) t.is(r.path, 'LAN candidate');
      t.true(toClient > 0, 'control: the counter sees the device dial the client on the LAN');
    },
  );
}

labTest('two homes behind one carrier-grade NAT (both 192.168.1.0/24): connected directly', async (t) => {
  const r = await runCell({
    homes: 'shared-cgn',
    client: { nat: 'double' },
    device: { nat: 'double' },
    upnp: 'none',
    peerTimeoutMs: 10_000,
  });
  t.log(`connected in ${r.connectMs} ms via ${r.path}`);
  t.true(r.directRequired);
  t.true(r.connected, r.error ?? '');
  t.not(r.path, 'relayed via server');
});

for (const row of [
  { homes: 'same-lan', nat: 'port-restricted', stack: 'dual' },
  { homes: 'same-lan', nat: 'symmetric', stack: 'ipv6' },
  { homes: 'shared-cgn', nat: 'double', stack: 'dual' },
] as const) {
  labTest(`IPv6, ${row.homes}, ${row.stack} hosts behind ${row.nat} IPv4: connected directly over IPv6`, async (t) => {
    const r = await runCell({
      ipv6: true,
      homes: row.homes,
      client: { nat: row.nat, stack: row.stack },
      device: { nat: row.nat, stack: row.stack },
      upnp: 'none',
      peerTimeoutMs: 10_000,
    });
    t.log(`connected in ${r.connectMs} ms via ${r.path} over ${r.pathFamily}; registered as ${r.registrations?.join(' and ')}`);
    t.true(r.directRequired);
    t.true(r.connected, r.error ?? '');
    t.not(r.path, 'relayed via server');
    t.is(r.pathFamily, 'ipv6');
  });
}

labTest("two different homes, both 192.168.1.0/24: no packet goes to the other home's private address", async (t) => {
  const counts = { toClient: -1, toDevice: -1 };
  const r = await runCell({
    client: { nat: 'port-restricted' },
    device: { nat: 'port-restricted' },
    upnp: 'none',
    peerTimeoutMs: 10_000,
    beforeConnect: countPrivateDials,
    async afterConnect({ lab }) {
      counts.toClient = (await readCounter(lab.device.host, 'to_client_lan')).packets;
      counts.toDevice = (await readCounter(lab.client.host, 'to_device_lan')).packets;
    },
  });
  t.log(
    `connected in ${r.connectMs} ms via ${r.path}; device -> ${ADDR.client}: ${counts.toClient} packets; client -> ${ADDR.device}: ${counts.toDevice} packets`,
  );
  t.true(r.connected, r.error ?? '');
  t.not(r.path, 'LAN candidate');
  t.is(counts.toClient, 0);
  t.is(counts.toDevice, 0);
});
