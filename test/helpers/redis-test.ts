/**
 * Specs that start their own redis-server (Debian package redis-server, which `npm test` installs
 * as root). Without it they are skipped loudly; the test runner's summary names the command that
 * runs them, and under CI a skipped group fails the run.
 */
import test from 'ava';
import { announceSkip, unmetReason } from '../../scripts/lib/prerequisites.js';

const reason = unmetReason('redis');
if (reason !== null) {
  announceSkip('redis', reason);
}

export const redisAvailable = reason === null;
/** `test` when redis-server is here, `test.skip` otherwise; hooks check `redisAvailable`. */
export const redisTest = redisAvailable ? test : test.skip;
export const redisSerialTest = redisAvailable ? test.serial : test.skip;
