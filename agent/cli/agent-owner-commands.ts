/**
 * On the device, for a technician (issue 19): `peerlink-agent clients [--json]`, `peerlink-agent
 * revoke <client>`, `peerlink-agent reset-password` (factory reset: the label password again, every
 * pairing dropped). They change the owner state file under the agent's lock; a running agent sees
 * the change within a second and ends the sessions whose access was taken away.
 */
import { openOwnerStore } from '../device/owner-state.js';
import { factoryReset, revokeClient } from '../device/owner-service.js';
import { loadAgentSettings } from '../device/settings.js';
import { ConfigError, ErrorCodes } from '../common/errors.js';

export const AGENT_OWNER_USAGE = `       peerlink-agent clients [--json] [--config FILE]
                                          the clients paired with this device (name, last use)
       peerlink-agent revoke <client ID (8+ hex digits) | name> [--config FILE]
                                          take one client's access away (its sessions end)
       peerlink-agent reset-password [--config FILE]
                                          factory reset: the label password again, every pairing dropped`;

export const AGENT_OWNER_COMMANDS = ['clients', 'revoke', 'reset-password'] as const;
export type AgentOwnerCommand = (typeof AGENT_OWNER_COMMANDS)[number];

type OwnerStore = ReturnType<typeof openOwnerStore>;

const bad = (m: string): ConfigError => new ConfigError([`${m}\n${AGENT_OWNER_USAGE}`], { code: ErrorCodes.OPTIONS_INVALID });

const COMMAND_MAINS: Readonly<
  Record<AgentOwnerCommand, (store: OwnerStore, args: readonly string[], json: boolean, out: NodeJS.WritableStream) => Promise<void>>
> = {
  clients: clientsMain,
  revoke: revokeMain,
  'reset-password': resetPasswordMain,
};

export async function agentOwnerCommand(
  command: AgentOwnerCommand,
  args: readonly string[],
  configFile: string,
  json: boolean,
  out: NodeJS.WritableStream = process.stdout,
): Promise<void> {
  const settings = await loadAgentSettings(configFile);
  await COMMAND_MAINS[command](openOwnerStore({ stateDir: settings.stateDir }), args, json, out);
}

async function clientsMain(store: OwnerStore, args: readonly string[], json: boolean, out: NodeJS.WritableStream): Promise<void> {
  if (args.length) throw bad('clients takes no arguments');
  const { clients } = store.current();
  const list = clients.map((c) => ({ id: c.id, name: c.name, createdMs: c.createdMs, lastUsedMs: c.lastUsedMs }));
  const when = (ms: number): string => (ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : 'never');
  out.write(
    json
      ? `${JSON.stringify(list)}\n`
      : list.map((c) => `${c.id}  ${c.name.padEnd(24)}  paired ${when(c.createdMs)}  last used ${when(c.lastUsedMs)}\n`).join('') ||
          'no paired clients\n',
  );
}

async function revokeMain(store: OwnerStore, args: readonly string[], _json: boolean, out: NodeJS.WritableStream): Promise<void> {
  const who = args[0];
  if (!who || args.length !== 1) throw bad('expected: revoke <client>');
  const s = await store.update((cur) => {
    const byName = cur.clients.filter((c) => c.name === who);
    const id = byName.length === 1 ? byName[0]!.id : /^[0-9a-f]{8,32}$/.test(who) ? who : null;
    if (!id) throw bad(`no single client named or with an ID starting ${JSON.stringify(who)}`);
    return revokeClient(cur, id);
  });
  out.write(`revoked; ${s.clients.length} client(s) remain paired\n`);
}

async function resetPasswordMain(store: OwnerStore, args: readonly string[], _json: boolean, out: NodeJS.WritableStream): Promise<void> {
  if (args.length) throw bad('reset-password takes no arguments');
  await store.update(factoryReset);
  out.write('factory reset: the label password works again and every pairing is dropped\n');
}
