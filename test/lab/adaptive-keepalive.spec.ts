/**
 * Adaptive keepalive against real NAT routers, with time scaled down 10x so the spec stays short
 * (routers forgetting after 3 s and 18 s stand for 30 s and 180 s; bounds 1.5-30 s for 15-300 s;
 * fixed 2.5 s for 25 s). The registration loop is the agent's own code; the full-length run
 * with the real agent is `npm run lab -- keepalive` (figures in docs/nat-lab.md).
 */
import { keepaliveRun, keepaliveTable } from '../../scripts/lab/keepalive.js';
import { labTest } from '../helpers/lab-test.js';

const SCALED = { durationMs: 150_000, intervalMs: 2_500, minIntervalMs: 1_500, maxIntervalMs: 30_000, device: 'loop' } as const;

labTest(
  'short-lived router: the device stays reachable; long-lived router: far fewer packets per hour than a fixed interval',
  async (t) => {
    t.timeout(SCALED.durationMs + 120_000);
    const [shortFixed, shortAdaptive, longFixed, longAdaptive] = await Promise.all([
      keepaliveRun({ ...SCALED, udpTimeoutS: 3, mode: 'fixed' }),
      keepaliveRun({ ...SCALED, udpTimeoutS: 3, mode: 'adaptive' }),
      keepaliveRun({ ...SCALED, udpTimeoutS: 18, mode: 'fixed' }),
      keepaliveRun({ ...SCALED, udpTimeoutS: 18, mode: 'adaptive' }),
    ]);
    t.log(`\n${keepaliveTable([shortFixed, shortAdaptive, longFixed, longAdaptive])}`);
    t.log(JSON.stringify(longAdaptive.detail));
    // Reachable: the router held the registration's mapping nearly all the time (learning costs a probe that fails).
    t.true(shortAdaptive.reachability >= 0.95, `${shortAdaptive.reachability}`);
    t.true(longAdaptive.reachability >= 0.9, `${longAdaptive.reachability}`);
    t.true(
      shortAdaptive.learntIntervalMs !== null &&
        shortAdaptive.learntIntervalMs < 3_000 &&
        shortAdaptive.learntIntervalMs >= SCALED.minIntervalMs,
    );
    // Far fewer packets than the fixed interval where the router keeps mappings long.
    t.true(longAdaptive.packetsPerHour * 2 < longFixed.packetsPerHour, `${longAdaptive.packetsPerHour} vs ${longFixed.packetsPerHour}`);
    t.true(shortFixed.reachability >= 0.95, 'the fixed interval below the timeout is the baseline that works');
  },
);
