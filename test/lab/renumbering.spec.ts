/** Router B's public address changes while the agent runs (PPP/DHCP): reachable again within one interval. */
import { renumberScenario } from '../../scripts/lab/renumber.js';
import { ADDR } from '../../scripts/lab/topology.js';
import { labTest } from '../helpers/lab-test.js';

/** Scheduling slack on top of the interval: the ack round trip and process wake-ups. */
const SLACK_MS = 2000;

labTest('after router B is renumbered, the server lists the new address within one registration interval and connects', async (t) => {
  const r = await renumberScenario();
  t.log(
    `reachable again ${r.reachableAgainMs} ms after the change (interval ${r.intervalMs} ms); connect ${r.connectMs} ms; error ${r.error}`,
  );
  t.not(r.reachableAgainMs, null);
  t.true(r.reachableAgainMs! <= r.intervalMs + SLACK_MS, `${r.reachableAgainMs} ms`);
  t.is(r.devicePublicAddress, ADDR.routerBRenumbered);
  t.true(r.connected, r.error ?? '');
});
