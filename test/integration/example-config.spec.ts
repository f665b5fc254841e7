/** The shipped example settings parse and validate (a technician's starting point must be right). */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseTomlText } from '../../agent/common/settings-checker.js';
import { checkAgentSettings } from '../../agent/device/settings.js';
import { checkServerSettings } from '../../agent/server/settings.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));

test('config/agent.example.toml is valid', async (t) => {
  const file = `${root}config/agent.example.toml`;
  const s = checkAgentSettings(parseTomlText(await readFile(file, 'utf8'), file), file);
  t.is(s.registration.intervalMs, 25000);
  t.deepEqual([...s.services.keys()], ['http']);
  t.false(s.dial.allowLoopback);
});

test('config/server.example.toml is valid', async (t) => {
  const file = `${root}config/server.example.toml`;
  const s = checkServerSettings(parseTomlText(await readFile(file, 'utf8'), file), file);
  t.is(s.tls.port, 7443);
  t.is(s.udp.port, 7400);
});
