/**
 * The agent's port mapping survives a gateway restart: the router reboots and forgets every
 * forwarding rule; the agent's next renewal asks again, the rule is back, and the client's reverse
 * dial (the only direct path with symmetric NATs on both sides) works. Without the renewal this
 * cell would fall back to the relay.
 */
import { runCell } from '../../scripts/lab/cell.js';
import { inNs } from '../../scripts/lab/exec.js';
import { labTest } from '../helpers/lab-test.js';

const RENEW_MS = 2000;

labTest(
  'after the device’s router restarts and forgets the mapping, the agent re-creates it and the client still dials the device',
  async (t) => {
    let forgotten = false;
    let back = false;
    const r = await runCell({
      client: { nat: 'symmetric' },
      device: { nat: 'symmetric' },
      upnp: 'igd2',
      upnpOn: 'device',
      agentReverse: `mapping_renew_ms = ${RENEW_MS}`,
      peerTimeoutMs: 10_000,
      async beforeConnect({ lab, agent, restartGateway }) {
        const mapped = await agent.waitFor((l) => l.msg === 'port mapped', 15_000);
        const port = String(mapped.external).split(':')[1]!;
        const rules = (): Promise<string> => inNs(lab.device.router!, ['nft', 'list', 'chain', 'inet', 'filter', 'prerouting_miniupnpd']);
        t.regex(await rules(), new RegExp(`dport ${port}\\b`), 'the mapping is in the router');
        await restartGateway('device');
        forgotten = !new RegExp(`dport ${port}\\b`).test(await rules());
        const renewedAfter = agent.lines.length;
        await agent.waitFor((l) => l.msg === 'port mapping renewed' && agent.lines.indexOf(l) >= renewedAfter, RENEW_MS * 5);
        back = new RegExp(`dport ${port}\\b`).test(await rules());
      },
    });
    t.true(forgotten, 'the restarted gateway had forgotten the mapping');
    t.true(back, 'the renewal put the mapping back in the router');
    t.log(`connected in ${r.connectMs} ms via ${r.path}`);
    t.true(r.connected, r.error ?? '');
    t.is(r.path, 'client dialled the device');
  },
);
