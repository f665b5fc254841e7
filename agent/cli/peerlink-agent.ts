#!/usr/bin/env node
/**
 * peerlink-agent [run] [--config FILE] | check-config [--config FILE] | status [--json] | diagnose [--json] [--config FILE]
 *                | clients [--json] | revoke <client> | reset-password   (the owner's controls, on the device)
 */
import { parseArgs } from 'node:util';
import { dirname } from 'node:path';
import { createLogger, type Logger } from '../common/logger.js';
import { fileExists } from '../common/files.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';
import { createAgent } from '../device/agent.js';
import { loadIdentity } from '../device/identity.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { hotReloadable, restartRequiredChanges } from '../device/reload-plan.js';
import { loadAgentSettings, type AgentSettings } from '../device/settings.js';
import { createAgentMonitor } from '../status/agent-monitor.js';
import { defaultStateFile } from '../status/state-file.js';
import { statusCommand } from '../status/status-command.js';
import { createNotifier } from '../systemd/notify.js';
import { createWatchdog } from '../systemd/watchdog.js';
import { exitIfStopHangs, reportAndExit, STOP_BACKSTOP_MS } from './run-main.js';
import { AGENT_OWNER_COMMANDS, AGENT_OWNER_USAGE, agentOwnerCommand, type AgentOwnerCommand } from './agent-owner-commands.js';

const PROGRAM = 'peerlink-agent';
const DEFAULT_CONFIG = '/etc/peerlink/agent.toml';
const USAGE = `usage: ${PROGRAM} [run] [--config FILE] [--identity FILE] [--state FILE]
                                          run the appliance agent (default config ${DEFAULT_CONFIG});
                                          --identity overrides the settings' identity_file (systemd: %d/identity)
       ${PROGRAM} check-config [--config FILE] [--identity FILE]
                                          validate settings and identity, then exit
       ${PROGRAM} status [--json] [--state FILE]
                                          the running agent's state (default state file ${defaultStateFile({})})
${AGENT_OWNER_USAGE}`;

/** --state, else the runtime directory systemd made; outside systemd only if /run/peerlink exists. */
async function chooseStateFile(explicit: string | undefined, logger: Logger): Promise<string | null> {
  if (explicit) return explicit;
  const file = defaultStateFile();
  if (process.env.RUNTIME_DIRECTORY || (await fileExists(dirname(file)))) return file;
  logger.info(
    { wouldBe: file },
    'no state file written (its directory does not exist; pass --state FILE); `status` will not see this agent',
  );
  return null;
}

const COMMANDS = ['run', 'check-config', 'status', 'diagnose'] as const;
type Command = (typeof COMMANDS)[number] | AgentOwnerCommand;
const isOwnerCommand = (c: string): c is AgentOwnerCommand => (AGENT_OWNER_COMMANDS as readonly string[]).includes(c);

interface Flags {
  readonly config?: string;
  readonly identity?: string;
  readonly state?: string;
  readonly json?: boolean;
}

async function main(): Promise<void> {
  const parsed = parse();
  if (!parsed) return;
  const { command, flags, args } = parsed;
  if (command === 'status') return statusMain(flags);
  const file = flags.config ?? DEFAULT_CONFIG;
  if (isOwnerCommand(command)) return agentOwnerCommand(command, args, file, flags.json === true);
  if (command === 'diagnose') return diagnoseMain(file, flags);
  const load = settingsLoader(file, flags.identity);
  const settings = await load();
  const identity = await loadIdentity(settings.identityFile);
  if (command === 'check-config') return checkConfigMain(file, settings, identity);
  await runMain(file, flags, load, settings, identity);
}

/** The command and its flags; null after --help. */
function parse(): { command: Command; flags: Flags; args: readonly string[] } | null {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        identity: { type: 'string' },
        state: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
    });
  } catch (err) {
    throw new ConfigError([`${(err as Error).message}\n${USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });
  }
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return null;
  }
  const command = parsed.positionals[0] ?? 'run';
  // The owner's commands take their own arguments (agent-owner-commands.ts checks them).
  if (!isOwnerCommand(command) && (!(COMMANDS as readonly string[]).includes(command) || parsed.positionals.length > 1)) {
    throw new ConfigError([`unknown command ${JSON.stringify(parsed.positionals.join(' '))}\n${USAGE}`], {
      code: ErrorCodes.OPTIONS_INVALID,
    });
  }
  return { command: command as Command, flags: parsed.values, args: parsed.positionals.slice(1) };
}

async function statusMain(flags: Flags): Promise<void> {
  process.exitCode = await statusCommand({ file: flags.state ?? defaultStateFile(), json: flags.json ?? false, out: process.stdout });
}

async function diagnoseMain(file: string, flags: Flags): Promise<void> {
  const { diagnoseCommand } = await import('../diagnose/cli.js');
  process.exitCode = await diagnoseCommand(file, { json: flags.json === true });
}

/** The settings file, read and checked (again at each SIGHUP); --identity overrides its identity_file. */
function settingsLoader(file: string, identityOverride: string | undefined): () => Promise<AgentSettings> {
  return async () => {
    const s = await loadAgentSettings(file);
    return identityOverride ? Object.freeze({ ...s, identityFile: identityOverride }) : s;
  };
}

function checkConfigMain(file: string, settings: AgentSettings, identity: DeviceIdentity): void {
  process.stdout.write(`${file}: ok (equipment ${identity.equipmentId}, services ${[...settings.services.keys()].join(', ')})\n`);
}

/** run: the agent with its monitor (state file, STATUS=) and watchdog, until SIGTERM/SIGINT; SIGHUP reloads. */
async function runMain(
  file: string,
  flags: Flags,
  load: () => Promise<AgentSettings>,
  initial: AgentSettings,
  identity: DeviceIdentity,
): Promise<void> {
  let settings = initial;
  const logger = createLogger({ name: PROGRAM, level: settings.logLevel });
  const notifier = createNotifier({ logger });
  let monitor: ReturnType<typeof createAgentMonitor> | null = null;
  const agent = createAgent({ identity, settings, logger, onStatus: () => void monitor?.refresh() });
  monitor = createAgentMonitor({
    agent,
    settings: () => settings,
    equipmentId: identity.equipmentId,
    configFile: file,
    notifier,
    stateFile: await chooseStateFile(flags.state, logger),
    logger,
  });
  const watchdog = createWatchdog({ notifier, health: () => monitor.health(), logger });
  await agent.start();
  monitor.start();
  watchdog.start();
  if (notifier.enabled) logger.info({ watchdogPingMs: watchdog.intervalMs }, 'systemd notification enabled');

  // SIGHUP: re-read and validate the settings; apply the hot ones, or keep the old ones on error.
  let reloading = Promise.resolve();
  process.on('SIGHUP', () => {
    reloading = reloading.then(async () => {
      await monitor.reloading();
      try {
        const next = await load();
        const restartRequired = restartRequiredChanges(settings, next);
        settings = hotReloadable(settings, next);
        agent.applySettings(settings);
        if (restartRequired.length > 0) logger.warn({ restartRequired }, 'these settings changed but apply only after a restart');
        await monitor.reloaded({ ok: true, problems: [], restartRequired });
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [String(err)];
        logger.error({ problems }, 'reload refused; keeping the running settings');
        await monitor.reloaded({ ok: false, problems, restartRequired: [] });
      }
    });
  });
  await new Promise<void>((resolve) => {
    const stop = (sig: NodeJS.Signals): void => {
      logger.info({ signal: sig }, 'stopping');
      exitIfStopHangs(STOP_BACKSTOP_MS, logger);
      watchdog.stop();
      void monitor
        .stopping()
        .then(() => agent.stop())
        .then(() => monitor.stop())
        .then(resolve);
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await notifier.flush();
  logger.info('stopped');
}

main().catch((err) => reportAndExit(PROGRAM, err));
