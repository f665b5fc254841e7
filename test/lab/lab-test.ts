/**
 * The NAT lab specs need root (network namespaces, nftables, miniupnpd). Without it they are
 * skipped, loudly, with the reason; CI runs as root and runs them.
 */
import test from 'ava';
import { isRoot } from '../../scripts/lab/exec.js';
import { sweepStaleLabs } from '../../scripts/lab/topology.js';

const root = isRoot();
if (root) {
  // Leftovers of a lab run that was killed (e.g. a timed-out test worker) go first.
  await sweepStaleLabs();
} else {
  process.stderr.write('\n*** NAT lab specs SKIPPED: they need root (ip netns, nft, miniupnpd). Run `npm test` as root after `npm run lab:setup`. ***\n\n');
}

/** Lab specs run one at a time within a file (each builds its own namespaces and programs). */
export const labTest = root ? test.serial : test.skip;
