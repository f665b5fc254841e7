/**
 * The NAT lab specs need root (network namespaces) and the lab's Debian packages (nftables,
 * conntrack, miniupnpd, redis-server), which `npm test` installs as root. Without them they are
 * skipped, loudly, with the reason; the test runner's summary names the command that runs them.
 */
import test from 'ava';
import { announceSkip, unmetReason } from '../../scripts/lib/prerequisites.js';
import { sweepStaleLabs } from '../../scripts/lab/topology.js';

const reason = unmetReason('lab');
if (reason === null) {
  // Leftovers of a lab run that was killed (e.g. a timed-out test worker) go first.
  await sweepStaleLabs();
} else {
  announceSkip('lab', reason);
}

/** Lab specs run one at a time within a file (each builds its own namespaces and programs). */
export const labTest = reason === null ? test.serial : test.skip;
export const labAvailable = reason === null;
