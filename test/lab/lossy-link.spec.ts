/**
 * Packet loss on a WAN link (nftables random drop): the flow still connects, and the drops
 * really happened (the rule's counter), so the test measures a lossy link, not a clean one.
 */
import { runCell } from '../../scripts/lab/cell.js';
import { inNs } from '../../scripts/lab/exec.js';
import { droppedPackets } from '../../scripts/lab/nat.js';
import { labTest } from '../helpers/lab-test.js';

const LOSS_PERCENT = 20;

labTest(
  `${LOSS_PERCENT}% loss on both WAN links: registration, notification and the connection still succeed (by whichever path comes up first)`,
  async (t) => {
    t.timeout(240_000);
    let dropped = 0;
    const r = await runCell({
      client: { nat: 'port-restricted', lossPercent: LOSS_PERCENT },
      device: { nat: 'port-restricted', lossPercent: LOSS_PERCENT },
      upnp: 'none',
      peerTimeoutMs: 20_000,
      // TCP through 20% loss on two links (about 36% per direction) backs its retransmissions off
      // exponentially: a few KiB and a long budget, as the target here is that connect succeeds.
      payloadBytes: 4 * 1024,
      clientTimeoutMs: 100_000,
      async afterConnect({ lab }) {
        dropped = droppedPackets(await inNs(lab.device.router!, ['nft', 'list', 'table', 'ip', 'lab_nat']));
      },
    });
    t.log(`connected in ${r.connectMs} ms via ${r.path}; ${dropped} packets dropped on the device's link; error ${r.error}`);
    t.true(dropped > 0, 'the loss rule dropped nothing');
    t.true(r.connected, r.error ?? '');
  },
);
