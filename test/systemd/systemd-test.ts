/**
 * The systemd specs need root and systemd-nspawn (Debian: systemd-container, installed by
 * scripts/lab/setup.sh). Without them they are skipped loudly; on CI (CI=true) a missing
 * nspawn is a failure, because .ci/run installs it.
 */
import test from 'ava';
import { isRoot, nspawnAvailable } from './nspawn.js';

const root = isRoot();
const nspawn = root && nspawnAvailable();
if (!root) {
  process.stderr.write('\n*** systemd specs SKIPPED: they need root (systemd-nspawn boots a container). Run `npm test` as root. ***\n\n');
} else if (!nspawn) {
  process.stderr.write('\n*** systemd specs SKIPPED: systemd-nspawn is missing. Install it with `bash scripts/lab/setup.sh` (package systemd-container). ***\n\n');
}

export const systemdTest = nspawn ? test.serial : root && process.env.CI === 'true' ? test.serial : test.skip;
export const systemdAvailable = nspawn;
