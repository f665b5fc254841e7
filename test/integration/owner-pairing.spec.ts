/**
 * Pairing (issue 19): `peerlink pair` with the label password makes a per-client key at both
 * ends; the client keeps it in a 0600 file, and `connect` then uses it without the password. The
 * owner sees the client, by its name, from the client (`peerlink device clients`) and on the
 * device (`peerlink-agent clients`), and can rename it.
 */
import test from 'ava';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { echoService, startFlow, tempDir } from '../helpers/flow.js';
import { agentCommand, echoOnce, pairAs, peerlink, serverArgs } from '../helpers/owner.js';

test('pair with the label password, then connect with the pairing alone; the owner lists and renames the client', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const dir = await tempDir(t, 'peerlink-pairings-');
  const id = flow.setup.equipmentId;

  const p = await pairAs(flow, dir, "Anna's phone");
  t.is(p.code, 0, p.stderr);
  t.regex(p.stdout, /paired with/);
  const file = join(dir, `${id}.json`);
  t.is((await stat(file)).mode & 0o777, 0o600, 'the credential file is 0600');
  t.deepEqual(await readdir(dir), [`${id}.json`]);

  const c = await echoOnce(flow, { pairingDir: dir }, 'hello');
  t.is(c.code, 0, c.stderr);
  t.is(c.stdout, '5', 'the echo came back through a session made with the pairing key, no password given');

  const list = await peerlink(['device', 'clients', id, '--json', '--pairing-dir', dir, ...serverArgs(flow)]);
  t.is(list.code, 0, list.stderr);
  const clients = JSON.parse(list.stdout) as { id: string; name: string; self?: boolean; lastUsedMs: number }[];
  t.is(clients.length, 1);
  t.is(clients[0]!.name, "Anna's phone");
  t.true(clients[0]!.self);
  t.true(clients[0]!.lastUsedMs > 0);

  const rn = await peerlink([
    'device',
    'rename',
    id,
    clients[0]!.id.slice(0, 8),
    '--name',
    'old phone',
    '--pairing-dir',
    dir,
    ...serverArgs(flow),
  ]);
  t.is(rn.code, 0, rn.stderr);
  const onDevice = await agentCommand(flow, ['clients', '--json']);
  t.is(onDevice.code, 0, onDevice.stderr);
  t.deepEqual(
    (JSON.parse(onDevice.stdout) as { name: string }[]).map((x) => x.name),
    ['old phone'],
  );
});

test('the owner controls need a pairing: an unpaired password holder cannot list clients', async (t) => {
  const echo = await echoService(t);
  const flow = await startFlow(t, { services: { echo: `127.0.0.1:${echo.port}` } });
  const dir = await tempDir(t, 'peerlink-pairings-');
  const r = await peerlink(['device', 'clients', flow.setup.equipmentId, '--pairing-dir', dir, ...serverArgs(flow)]);
  t.is(r.code, 2, 'no pairing: a usage error, nothing sent');
  t.regex(r.stderr, /no pairing/);
});
