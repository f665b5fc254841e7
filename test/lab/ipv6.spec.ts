/**
 * Issue 14, IPv6: a home router on IPv6 translates nothing but firewalls inbound, statefully
 * (RFC 6092; nftables: replies accepted, anything unsolicited dropped and counted). The server is
 * dual stack; client and agent find it by a name with an A and an AAAA record.
 *
 * - A dual-stack client and a dual-stack device, each behind such a router (and its port-restricted
 *   IPv4 NAT): the device registers over both families, and they connect directly over IPv6 (the
 *   TCP simultaneous open passes both stateful firewalls), not through the server.
 * - An IPv6-only client (a mobile network without IPv4) reaches an IPv4-only device through the
 *   dual-stack server's relay.
 * - Cross-family candidates (companion connections): a dual-stack client that reaches the server
 *   over IPv4 (IPv4 preferred by its gai.conf) and a dual-stack device, both behind symmetric IPv4
 *   NATs (where IPv4 alone relays), connect directly over IPv6; so does an IPv6-only client with a
 *   dual-stack device that reaches the server over IPv4.
 * - `peerlink-agent diagnose` reports each family's reachability.
 */
import { runCell } from '../../scripts/lab/cell.js';
import { diagnoseScenario } from '../../scripts/lab/diagnose.js';
import { inNs } from '../../scripts/lab/exec.js';
import { ADDR, ADDR6 } from '../../scripts/lab/topology.js';
import { labTest } from '../helpers/lab-test.js';

labTest(
  'dual-stack client and device behind two IPv6 stateful firewalls: registered over both families, connected directly over IPv6',
  async (t) => {
    let unsolicited = -1;
    let forwarded6 = -1;
    const r = await runCell({
      ipv6: true,
      client: { nat: 'port-restricted', stack: 'dual' },
      device: { nat: 'port-restricted', stack: 'dual' },
      upnp: 'none',
      peerTimeoutMs: 10_000,
      async beforeConnect({ lab }) {
        // Counts the TCP packets router B forwards between the two hosts' IPv6 addresses (both ways).
        await inNs(
          lab.device.router!,
          ['nft', '-f', '-'],
          `table ip6 lab_count6 {\n  counter direct6 { }\n  chain count_fwd { type filter hook forward priority -150; policy accept;\n    ip6 saddr ${ADDR6.client} ip6 daddr ${ADDR6.device} meta l4proto tcp counter name direct6\n    ip6 saddr ${ADDR6.device} ip6 daddr ${ADDR6.client} meta l4proto tcp counter name direct6\n  }\n}\n`,
        );
      },
      async afterConnect({ lab }) {
        const read = async (table: string, name: string): Promise<number> =>
          Number(/packets (\d+)/.exec(await inNs(lab.device.router!, ['nft', 'list', 'counter', 'ip6', table, name]))?.[1] ?? -1);
        forwarded6 = await read('lab_count6', 'direct6');
        unsolicited = await read('lab_fw6', 'unsolicited_in');
      },
    });
    t.log(
      `connected in ${r.connectMs} ms via ${r.path} over ${r.pathFamily}; registered as ${r.registrations?.join(' and ')}; ` +
        `router B forwarded ${forwarded6} TCP packets between the hosts' IPv6 addresses, dropped ${unsolicited} unsolicited`,
    );
    t.true(r.connected, r.error ?? '');
    t.not(r.path, 'relayed via server');
    t.is(r.pathFamily, 'ipv6');
    t.true(forwarded6 > 0, 'the tunnel crossed router B over IPv6');
    t.true(unsolicited >= 0, 'control: the firewall counter exists');
    // Each family's mapping: the IPv4 one at router B's public address, the IPv6 one at the device's own.
    t.true(
      r.registrations!.some((m) => m.startsWith(`${ADDR.routerB}:`)),
      `IPv4 mapping: ${r.registrations?.join(', ')}`,
    );
    t.true(
      r.registrations!.some((m) => m.startsWith(`${ADDR6.device}:`)),
      `IPv6 mapping: ${r.registrations?.join(', ')}`,
    );
  },
);

/** Counts the TCP packets router B forwards between the two hosts' IPv6 addresses (both ways). */
async function countDirect6(router: string): Promise<void> {
  await inNs(
    router,
    ['nft', '-f', '-'],
    `table ip6 lab_count6 {\n  counter direct6 { }\n  chain count_fwd { type filter hook forward priority -150; policy accept;\n    ip6 saddr ${ADDR6.client} ip6 daddr ${ADDR6.device} meta l4proto tcp counter name direct6\n    ip6 saddr ${ADDR6.device} ip6 daddr ${ADDR6.client} meta l4proto tcp counter name direct6\n  }\n}\n`,
  );
}

for (const c of [
  {
    name: 'a dual-stack client that reached the server over IPv4 and a dual-stack device, behind symmetric IPv4 NATs',
    client: { nat: 'symmetric', stack: 'dual4' },
    device: { nat: 'symmetric', stack: 'dual' },
    requestFamily: 'ipv4',
  },
  {
    name: 'an IPv6-only client and a dual-stack device that reached the server over IPv4',
    client: { nat: 'port-restricted', stack: 'ipv6' },
    device: { nat: 'port-restricted', stack: 'dual4' },
    requestFamily: 'ipv6',
  },
] as const) {
  labTest(`cross-family candidates: ${c.name} connect directly over IPv6`, async (t) => {
    let forwarded6 = -1;
    const requests: string[] = [];
    const attaches: string[] = [];
    const r = await runCell({
      ipv6: true,
      client: c.client,
      device: c.device,
      upnp: 'none',
      peerTimeoutMs: 10_000,
      onLine(who, l) {
        if (who === 'server' && l.msg === 'S203 connection request received') requests.push(String(l.client));
        if (who === 'agent' && typeof l.msg === 'string' && l.msg.startsWith('S207 request authorised'))
          attaches.push(JSON.stringify(l.punch));
      },
      beforeConnect: ({ lab }) => countDirect6(lab.device.router!),
      async afterConnect({ lab }) {
        forwarded6 = Number(
          /packets (\d+)/.exec(await inNs(lab.device.router!, ['nft', 'list', 'counter', 'ip6', 'lab_count6', 'direct6']))?.[1] ?? -1,
        );
      },
    });
    t.log(
      `request from ${requests.join(', ')}; device punched ${attaches.join(', ')}; ${r.path} over ${r.pathFamily} in ${r.connectMs} ms; router B forwarded ${forwarded6} TCP packets over IPv6`,
    );
    t.true(r.connected, r.error ?? '');
    // The request itself came over the family named: the IPv6 path is the companions' doing.
    t.is(requests.length, 1);
    t.is(requests[0]!.includes(']') || requests[0]!.split(':').length > 2 ? 'ipv6' : 'ipv4', c.requestFamily, requests[0]);
    t.not(r.path, 'relayed via server');
    t.is(r.pathFamily, 'ipv6');
    t.true(forwarded6 > 0, 'the tunnel crossed router B over IPv6');
  });
}

labTest("an IPv6-only client reaches an IPv4-only device through the dual-stack server's relay", async (t) => {
  const r = await runCell({
    ipv6: true,
    client: { nat: 'port-restricted', stack: 'ipv6' },
    device: { nat: 'port-restricted', stack: 'ipv4' },
    upnp: 'none',
    peerTimeoutMs: 10_000,
  });
  t.log(`connected in ${r.connectMs} ms via ${r.path}; registered as ${r.registrations?.join(' and ')}`);
  t.true(r.connected, r.error ?? '');
  t.is(r.path, 'relayed via server');
  t.deepEqual(
    r.registrations?.map((m) => m.split(':')[0]),
    [ADDR.routerB],
    'the device registered over IPv4 only',
  );
});

labTest(
  "diagnose reports each family: IPv4 behind the NAT, IPv6 the device's own address; an IPv4-only device is warned about IPv6",
  async (t) => {
    const dual = await diagnoseScenario({ deviceNat: 'port-restricted', upnp: 'none', deviceStack: 'dual' });
    t.log(dual.text);
    const f = dual.report.checks.find((c) => c.id === 'families')!;
    t.is(f.verdict, 'ok');
    t.like(f.data, {
      ipv4: { reachable: true, translated: true, observed: { address: ADDR.routerB } },
      ipv6: { reachable: true, translated: false, observed: { address: ADDR6.device } },
    });
    t.true(dual.report.ok);

    const v4only = await diagnoseScenario({ deviceNat: 'port-restricted', upnp: 'none', deviceStack: 'ipv4' });
    t.log(v4only.text);
    const g = v4only.report.checks.find((c) => c.id === 'families')!;
    t.is(g.verdict, 'warn');
    t.like(g.data, { ipv4: { reachable: true }, ipv6: { reachable: false, reason: 'no answer' } });
    t.regex(g.fix ?? '', /IPv6 has an address but no answer/);
    t.true(v4only.report.ok, 'a missing family is a warning: the device is reachable over IPv4');
  },
);
