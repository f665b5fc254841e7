#!/usr/bin/env node
/** peerlink-agent [run] [--config FILE] | check-config [--config FILE] | diagnose [--json] [--config FILE] */
import { parseArgs } from 'node:util';
import { createLogger } from '../common/logger.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { createAgent } from '../device/agent.js';
import { loadIdentity } from '../device/identity.js';
import { loadAgentSettings } from '../device/settings.js';
import { reportAndExit } from './run-main.js';

const PROGRAM = 'peerlink-agent';
const DEFAULT_CONFIG = '/etc/peerlink/agent.toml';
const USAGE = `usage: ${PROGRAM} [run] [--config FILE]      run the appliance agent (default config ${DEFAULT_CONFIG})
       ${PROGRAM} check-config [--config FILE]  validate settings and identity, then exit
       ${PROGRAM} diagnose [--json] [--config FILE]  check settings, identity, server, NAT, UPnP and clock; say what to fix`;

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } }, allowPositionals: true });
  } catch (err) {
    throw new ConfigError([`${(err as Error).message}\n${USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const command = parsed.positionals[0] ?? 'run';
  if (!['run', 'check-config', 'diagnose'].includes(command) || parsed.positionals.length > 1) {
    throw new ConfigError([`unknown command ${JSON.stringify(parsed.positionals.join(' '))}\n${USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
  }
  const file = parsed.values.config ?? DEFAULT_CONFIG;
  if (command === 'diagnose') {
    const { diagnoseCommand } = await import('../diagnose/cli.js');
    process.exitCode = await diagnoseCommand(file, { json: parsed.values.json === true });
    return;
  }
  const settings = await loadAgentSettings(file);
  const identity = await loadIdentity(settings.identityFile);
  if (command === 'check-config') {
    process.stdout.write(`${file}: ok (equipment ${identity.equipmentId}, services ${[...settings.services.keys()].join(', ')})\n`);
    return;
  }
  const logger = createLogger({ name: PROGRAM, level: settings.logLevel });
  const agent = createAgent({ identity, settings, logger });
  await agent.start();

  // SIGHUP: re-read and validate the settings; apply them, or keep the old ones on error.
  process.on('SIGHUP', () => {
    loadAgentSettings(file).then(
      (next) => agent.applySettings(next),
      (err) => logger.error({ problems: err instanceof ConfigError ? err.problems : [String(err)] }, 'reload refused; keeping the running settings'),
    );
  });
  await new Promise<void>((resolve) => {
    const stop = (sig: NodeJS.Signals): void => {
      logger.info({ signal: sig }, 'stopping');
      void agent.stop().then(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  logger.info('stopped');
}

main().catch((err) => reportAndExit(PROGRAM, err));
