/**
 * P2 for the secrets issue 19 adds: pairing, listing, renaming, revoking and a password change
 * through the library, recorded in plaintext by a TLS-terminating proxy in front of the real
 * server (with the server logging at debug). Neither the per-client keys, nor the new password,
 * nor its access key, nor the label password appears in anything the server receives or sends,
 * or in its log; the client names the owner chose do not either (they travel inside the
 * end-to-end channel). The device's state file holds keys but no password.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAgent } from '../../agent/device/agent.js';
import { loadIdentity } from '../../agent/device/identity.js';
import { loadAgentSettings } from '../../agent/device/settings.js';

import { ownerRequest, pair, setPassword } from '../../agent/client/owner-client.js';
import { deriveAccessKey } from '../../agent/protocol/keys.js';
import { OWNER_STATE_FILE_NAME } from '../../agent/device/owner-state.js';
import { createLoopbackSetup } from '../../scripts/lib/loopback-setup.js';
import {
  echoService,
  findSecrets,
  LOOPBACK,
  memoryLogger,
  recordingProxy,
  tempDir,
  waitUntil,
  startLoopbackServer,
} from '../helpers/harness.js';

const ID = 'P2B-DEVICE';
const NEW_PASSWORD = 'k7Qp-Zr3x-W9mT-b2Lc-Y8vN';
const NAMES = ['Zanzibar-phone-name', 'Quixotic-laptop-name'];

test('P2: pairing and every owner control leave no password, key or client name at the server', async (t) => {
  const servicePort = await echoService(t);
  const dir = await tempDir(t, 'peerlink-p2b-');
  const setup = await createLoopbackSetup({ dir, equipmentId: ID, services: { echo: `${LOOPBACK}:${servicePort}` } });
  const serverLog = memoryLogger('peerlink-server', 'debug');
  await startLoopbackServer(t, setup, { logger: serverLog.logger });
  const settings = await loadAgentSettings(setup.agentConfig);
  const agent = createAgent({ identity: await loadIdentity(setup.identityFile), settings });
  await agent.start();
  t.teardown(() => agent.stop());
  await waitUntil(() => agent.status().state === 'registered', 'the agent to register');

  const proxy = await recordingProxy(t, setup, setup.tlsPort);
  const base = {
    server: { host: LOOPBACK, port: proxy.port },
    serverName: 'localhost',
    caPem: setup.caPem,
    equipmentId: ID,
    accept: { host: LOOPBACK, port: 0 },
  };
  const phone = await pair({ ...base, password: setup.password }, NAMES[0]!);
  const laptop = await pair({ ...base, password: setup.password }, NAMES[1]!);
  const list = await ownerRequest({ ...base, accessKey: laptop.key }, { op: 'clients' });
  t.deepEqual(
    list.clients?.map((c) => c.name),
    NAMES,
    'the controls really ran',
  );
  await ownerRequest({ ...base, accessKey: laptop.key }, { op: 'rename', id: laptop.clientId, name: 'renamed-laptop' });
  await ownerRequest({ ...base, accessKey: laptop.key }, { op: 'revoke', id: phone.clientId });
  t.is(await setPassword({ ...base, accessKey: laptop.key }, NEW_PASSWORD, true), 0);

  const secrets = {
    passwords: {
      label: setup.password,
      newPassword: NEW_PASSWORD,
      ...Object.fromEntries(NAMES.map((n, i) => [`name${i}`, n])),
      renamed: 'renamed-laptop',
    },
    keys: {
      phoneKey: phone.key,
      laptopKey: laptop.key,
      newAccessKey: await deriveAccessKey(NEW_PASSWORD, ID),
      labelAccessKey: await deriveAccessKey(setup.password, ID),
    },
  };
  const toServer = Buffer.concat(proxy.toServer);
  t.true(toServer.length > 0, 'the proxy carried the conversations');
  t.deepEqual(findSecrets(toServer, secrets), [], 'in what the client sent the server');
  t.deepEqual(findSecrets(Buffer.concat(proxy.toClient), secrets), [], 'in what the server sent the client');
  t.deepEqual(findSecrets(serverLog.lines.join(''), secrets), [], 'in the server log');
  const state = await readFile(join(settings.stateDir, OWNER_STATE_FILE_NAME), 'utf8');
  t.deepEqual(
    findSecrets(state, { passwords: { label: setup.password, newPassword: NEW_PASSWORD } }),
    [],
    'no password in the device state',
  );
});
