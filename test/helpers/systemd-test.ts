/**
 * The systemd specs need root and systemd-nspawn (Debian: systemd-container, which `npm test`
 * installs as root). Without them they are skipped loudly; the test runner's summary names the
 * command that runs them, and under CI a skipped group fails the run.
 */
import test from 'ava';
import { announceSkip, unmetReason } from '../../scripts/lib/prerequisites.js';

const reason = unmetReason('systemd');
if (reason !== null) {
  announceSkip('systemd', reason);
}

export const systemdTest = reason === null ? test.serial : test.skip;
export const systemdAvailable = reason === null;
