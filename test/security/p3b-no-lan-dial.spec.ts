/**
 * P3b: a device cannot be aimed at its own LAN or host from the Internet. The client address a
 * request names comes from the server; a server on a public address (compromised, or relaying a
 * client that lies) must not make the device connect to 192.168.x, 10.x, 172.16-31.x, 100.64/10,
 * a ULA or loopback. Only a private deployment (the server itself reached on such an address, or
 * loopback: the demo and the tests) or an explicit `[dial] allow_private = true` opens private
 * targets; loopback needs allow_loopback and a server on loopback. The device's real decision
 * (authorizer + settings as parsed from the example file) is checked with a correctly sealed request.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { createAuthorizer } from '../../agent/device/authorizer.js';
import { ReplayCache } from '../../agent/common/replay-cache.js';
import { checkAgentSettings, type AgentSettings } from '../../agent/device/settings.js';
import { deriveRequestTagKey } from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { DIST } from '../../scripts/lib/program.js';

const ID = 'dev-p3b';
const ACCESS_KEY = Buffer.alloc(32, 0x3b);
const NOW = 1_700_000_000_000;
const LAN_TARGETS = ['192.168.1.1', '10.0.0.1', '172.16.5.4', '100.64.0.7', 'fd00::1', '::ffff:192.168.0.1'];
const PUBLIC_SERVER = '130.74.23.6';

async function exampleSettings(dial: Record<string, unknown> = {}): Promise<AgentSettings> {
  // dist/ mirrors the sources; the example config lives next to them in the repository.
  const file = join(DIST, '..', 'config', 'agent.example.toml');
  const doc = parseToml(await readFile(file, 'utf8')) as Record<string, Record<string, unknown>>;
  doc.dial = { ...doc.dial, ...dial };
  return checkAgentSettings(doc, file);
}

let nonce = 0;
function decide(settings: AgentSettings, client: string, serverAddress: string): number {
  const clientNonce = Buffer.alloc(16);
  clientNonce.writeUInt32BE(++nonce, 12);
  const authorize = createAuthorizer({
    equipmentId: ID,
    accessKey: ACCESS_KEY,
    freshnessMs: 30_000,
    replayCache: new ReplayCache(),
    services: () => new Map([['http', { host: '127.0.0.1', port: 80 }]]),
    dialPolicy: () => settings.dial,
  });
  const sealedRequest = sealRequest(
    { clientNonce, timestampMs: NOW, equipmentId: ID, service: 'http', advertisedPort: 40000 },
    deriveRequestTagKey(ACCESS_KEY),
  );
  return authorize({ client: { address: client, port: 40000 }, advertisedPort: 40000, sealedRequest }, NOW, serverAddress).status;
}

test('P3b: with the default settings and a server on the Internet, every LAN, CGN, ULA and loopback target is refused (DIAL_REFUSED)', async (t) => {
  const settings = await exampleSettings();
  t.false(settings.dial.allowPrivate, 'the example config keeps allow_private off');
  for (const target of [...LAN_TARGETS, '127.0.0.1', '::1']) t.is(decide(settings, target, PUBLIC_SERVER), Status.DIAL_REFUSED, target);
  t.is(decide(settings, '198.51.100.20', PUBLIC_SERVER), Status.OK, 'control: a public client is dialled');
});

test('P3b: allow_loopback does not open loopback while the server is on the Internet', async (t) => {
  const settings = await exampleSettings({ allow_loopback: true });
  t.is(decide(settings, '127.0.0.1', PUBLIC_SERVER), Status.DIAL_REFUSED);
  t.is(decide(settings, '127.0.0.1', '127.0.0.1'), Status.OK, 'control: everything on one machine');
});

test('P3b: a private deployment (server on a private, CGN or ULA address, or loopback) may dial private clients', async (t) => {
  const settings = await exampleSettings();
  for (const server of ['192.168.7.2', '10.1.1.1', '100.100.0.1', 'fd00::53', '127.0.0.1']) {
    for (const target of LAN_TARGETS) t.is(decide(settings, target, server), Status.OK, `${target} with the server at ${server}`);
  }
});

test('P3b: [dial] allow_private = true opens private targets with a server on the Internet (and is validated)', async (t) => {
  const settings = await exampleSettings({ allow_private: true });
  for (const target of LAN_TARGETS) t.is(decide(settings, target, PUBLIC_SERVER), Status.OK, target);
  t.is(decide(settings, '127.0.0.1', PUBLIC_SERVER), Status.DIAL_REFUSED, 'loopback stays closed');
  const err = await t.throwsAsync(exampleSettings({ allow_private: 'yes' }));
  t.is((err as { code?: string }).code, 'PEERLINK_ERR_CONFIG_INVALID');
});
