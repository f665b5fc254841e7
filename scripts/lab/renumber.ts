/**
 * The patent's motivating case: router B's public address changes (PPP/DHCP re-addressing)
 * while the agent runs. Measures the time until the server's list holds the new address, then
 * connects through it.
 */
import { runCell, type CellResult } from './cell.js';
import { ADDR } from './topology.js';

export const RENUMBER_INTERVAL_MS = 15_000;

export interface RenumberResult extends CellResult {
  readonly reachableAgainMs: number | null;
  readonly intervalMs: number;
}

export async function renumberScenario(o: { log?: (s: string) => void } = {}): Promise<RenumberResult> {
  const log = o.log ?? (() => undefined);
  let reachableAgainMs: number | null = null;
  const r = await runCell({
    client: { nat: 'port-restricted' },
    device: { nat: 'port-restricted' },
    upnp: 'igd2',
    registerIntervalMs: RENUMBER_INTERVAL_MS,
    async beforeConnect({ lab, server }) {
      log(`device registered as router B's ${lab.device.publicAddress}; renumbering router B to ${ADDR.routerBRenumbered}`);
      const t = performance.now();
      await lab.renumberDeviceRouter(ADDR.routerBRenumbered);
      await server.waitFor(
        (l) => l.msg === 'S202 device registered' && typeof l.mapping === 'string' && l.mapping.startsWith(`${ADDR.routerBRenumbered}:`),
        RENUMBER_INTERVAL_MS * 2 + 5000,
      );
      reachableAgainMs = Math.round(performance.now() - t);
      log(`server's list holds the new address ${reachableAgainMs} ms after the change (registration interval ${RENUMBER_INTERVAL_MS} ms)`);
    },
  });
  log(
    `connect after renumbering: ${r.connected ? `connected in ${r.connectMs} ms, ${r.bytesVerified} bytes verified` : `FAILED (${r.error})`}`,
  );
  return { ...r, reachableAgainMs, intervalMs: RENUMBER_INTERVAL_MS };
}
