/**
 * The reverse strategy: the client dials the device's own port, where the device has a public
 * address or its router forwards a port to it (the agent's UPnP/NAT-PMP mapping). Here the client
 * can take no connection (symmetric NAT or a carrier-grade NAT, no mapping of its own), so the
 * patent's S208 cannot work and no hole punch can either. The agent removes its mapping on exit.
 */
import { runCell } from '../../scripts/lab/cell.js';
import type { NatKind } from '../../scripts/lab/nat.js';
import type { LogLine } from '../../scripts/lib/program.js';
import type { UpnpKind } from '../../scripts/lab/upnp.js';
import { labTest } from '../helpers/lab-test.js';

const CASES: readonly { client: NatKind; device: NatKind; upnp: UpnpKind; why: string }[] = [
  { client: 'symmetric', device: 'none', upnp: 'none', why: 'the device has a public address' },
  { client: 'double', device: 'symmetric', upnp: 'igd2', why: "the device's router forwards a port (UPnP IGD v2)" },
  { client: 'symmetric', device: 'port-restricted', upnp: 'natpmp', why: "the device's router forwards a port (NAT-PMP)" },
  { client: 'symmetric', device: 'symmetric', upnp: 'igd1', why: "the device's router forwards a port (UPnP IGD v1)" },
];

for (const c of CASES) {
  labTest(`client behind ${c.client}, device behind ${c.device}: ${c.why}, so the client dials the device`, async (t) => {
    const agentLines: LogLine[] = [];
    const r = await runCell({
      client: { nat: c.client },
      device: { nat: c.device },
      upnp: c.upnp,
      upnpOn: 'device',
      peerTimeoutMs: 10_000,
      onLine: (who, l) => who === 'agent' && agentLines.push(l),
      // The agent maps in the background after it starts (UPnP discovery first: up to 2 s before
      // NAT-PMP is asked); connect once the mapping exists, as a client arriving later would.
      ...(c.upnp !== 'none'
        ? { beforeConnect: async ({ agent }) => void (await agent.waitFor((l) => l.msg === 'port mapped', 15_000)) }
        : {}),
    });
    t.log(`connected in ${r.connectMs} ms via ${r.path}`);
    t.true(r.directRequired);
    t.true(r.connected, r.error ?? '');
    t.is(r.path, 'client dialled the device');
    t.true(r.bytesVerified > 0);
    if (c.upnp !== 'none') {
      const mapped = agentLines.find((l) => l.msg === 'port mapped');
      t.truthy(mapped, 'the agent mapped its reverse port');
      t.regex(String(mapped?.external), /^202\.204\.16\.13:\d+$/);
      // Each gateway kind through its own protocol (IGD v1 is not silently served by NAT-PMP).
      t.is(mapped?.via, c.upnp === 'natpmp' ? 'natpmp' : 'upnp');
      if (c.upnp !== 'natpmp') t.is(mapped?.igd, `urn:schemas-upnp-org:service:WANIPConnection:${c.upnp === 'igd1' ? 1 : 2}`);
      t.truthy(
        agentLines.find((l) => l.msg === 'port mapping removed'),
        'the agent removed its mapping on a clean exit',
      );
    }
  });
}
