/**
 * `peerlink-agent diagnose`: what a field technician needs to know when a device "cannot be
 * reached", checked for real and said in plain words, like `tailscale netcheck`. Each check has
 * a verdict and a suggested fix; later checks are skipped when what they need failed.
 * It runs beside a running agent: probes change nothing at the server (agent/server/probe-responder.ts),
 * and the test port mapping is removed again.
 */
import type { Logger } from 'pino';
import { silentLogger } from '../common/logger.js';
import type { Found } from './found.js';
import { checkIdentity, checkSettings } from './local-checks.js';
import { checkNatMapping, checkPortMapping, checkPublicAddress } from './nat-checks.js';
import type { CheckResult, DiagnoseReport } from './report.js';
import { checkClock, checkFamilies, checkTls, checkUdp, resolveServer } from './server-checks.js';

export { CERT_EXPIRY_WARN_DAYS, CLOCK_WARN_MS } from './server-checks.js';

export interface DiagnoseOptions {
  readonly configFile: string;
  readonly logger?: Logger;
  /** Skip the UPnP/NAT-PMP test (it takes up to 4 s when there is no gateway). */
  readonly skipPortMapping?: boolean;
}

/** One step at a time, each skipped when what it needs failed; the report lists them in a fixed order. */
export async function runDiagnose(o: DiagnoseOptions): Promise<DiagnoseReport> {
  const logger = o.logger ?? silentLogger();
  const checks: CheckResult[] = [];
  const found: Found = {
    settings: null,
    identity: null,
    serverAddr: null,
    serverByFamily: { 4: null, 6: null },
    reply: null,
    mappingReply: null,
  };
  found.settings = await checkSettings(o.configFile, checks);
  found.identity = await checkIdentity(found.settings, checks);
  found.serverAddr = await resolveServer(found, checks);
  await checkUdp(found, checks);
  await checkFamilies(found, checks);
  await checkTls(found, checks);
  await checkPublicAddress(found, checks);
  checkNatMapping(found, checks);
  await checkPortMapping(found, o.skipPortMapping === true, logger, checks);
  checkClock(found, checks);

  const order = ['settings', 'identity', 'server-udp', 'families', 'server-tls', 'public-address', 'nat-mapping', 'port-mapping', 'clock'];
  checks.sort((x, y) => order.indexOf(x.id) - order.indexOf(y.id));
  return {
    equipmentId: found.identity?.equipmentId ?? null,
    server: found.settings ? found.settings.server.host : null,
    checks,
    ok: checks.every((c) => c.verdict !== 'fail'),
  };
}
