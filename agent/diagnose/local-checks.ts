/** The checks that need no network: the settings file and the factory identity. */
import { ConfigError, ErrorCodes, isPeerlinkError } from '../common/errors.js';
import { loadIdentity } from '../device/identity.js';
import type { DeviceIdentity } from '../protocol/identity-file.js';
import { loadAgentSettings, type AgentSettings } from '../device/settings.js';
import type { CheckResult } from './report.js';
import { skip } from './found.js';

export async function checkSettings(configFile: string, checks: CheckResult[]): Promise<AgentSettings | null> {
  try {
    const settings = await loadAgentSettings(configFile);
    checks.push({
      id: 'settings',
      title: 'settings',
      verdict: 'ok',
      summary: `${configFile} is valid (services: ${[...settings.services.keys()].join(', ')})`,
    });
    return settings;
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
    checks.push({
      id: 'settings',
      title: 'settings',
      verdict: 'fail',
      summary: problems.join('; '),
      fix: problems.some((p) => p.includes('ENOENT'))
        ? `the settings file is missing: start from config/agent.example.toml, save it as ${configFile}, edit server.host and identity_file`
        : `edit ${configFile} as each message says (see config/agent.example.toml), then run diagnose again`,
      data: { problems },
    });
    return null;
  }
}

export async function checkIdentity(settings: AgentSettings | null, checks: CheckResult[]): Promise<DeviceIdentity | null> {
  if (!settings) {
    checks.push(skip('identity', 'identity', 'the settings are not valid'));
    return null;
  }
  try {
    const identity = await loadIdentity(settings.identityFile);
    checks.push({
      id: 'identity',
      title: 'identity',
      verdict: 'ok',
      summary: `${settings.identityFile}: equipment ${identity.equipmentId}, mode 600, well-formed`,
    });
    return identity;
  } catch (err) {
    const perms = isPeerlinkError(err, ErrorCodes.IDENTITY_PERMISSIONS);
    checks.push({
      id: 'identity',
      title: 'identity',
      verdict: 'fail',
      summary: (err as Error).message.replace(/\n/g, '; '),
      fix: perms
        ? `chmod 600 ${settings.identityFile}`
        : 'the factory identity file is missing or damaged: restore it from the factory records (peerlink-provision batch output); never edit it by hand',
    });
    return null;
  }
}
