/** The router's UDP mapping lifetime is selectable per router (conntrack timeouts per namespace). */
import { runCell } from '../../scripts/lab/cell.js';
import { inNs } from '../../scripts/lab/exec.js';
import { SERVER_UDP_PORT } from '../../scripts/lab/cell.js';
import { labTest } from '../helpers/lab-test.js';

async function registrationMappingLifetimeS(udpTimeoutS: number): Promise<number> {
  let remaining = -1;
  await runCell({
    client: { nat: 'none' },
    device: { nat: 'port-restricted', udpTimeoutS },
    upnp: 'none',
    async beforeConnect({ lab }) {
      const line = (await inNs(lab.device.router!, ['conntrack', '-L', '-p', 'udp']))
        .split('\n')
        .find((l) => l.includes(`dport=${SERVER_UDP_PORT}`));
      remaining = Number(line?.split(/\s+/)[2] ?? -1);
    },
  });
  return remaining;
}

labTest(
  'a router set to forget UDP mappings after 30 s holds the registration mapping for at most 30 s; one set to 180 s for longer',
  async (t) => {
    const short = await registrationMappingLifetimeS(30);
    const long = await registrationMappingLifetimeS(180);
    t.log(`remaining lifetime of the registration mapping: ${short} s (30 s router), ${long} s (180 s router)`);
    t.true(short > 0 && short <= 30, `${short}`);
    t.true(long > 30 && long <= 180, `${long}`);
  },
);
