/**
 * The soak runs the server with the node flags of systemd/peerlink-server.service (scripts/soak/systems.ts),
 * so it measures what production runs: both server units give node the same flags, and those fix the
 * young generation's size (min = max semi-space), without which V8 resizes it with the load and the
 * server's RSS steps by several MiB (docs/faults.md, Soak). The benches start their servers the same way.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { SERVER_UNIT, nodeFlagsOfUnit } from '../../scripts/soak/systems.js';
import { serverNodeFlags } from '../../scripts/lib/server-unit.js';

const unit = (name: string): string => readFileSync(join(SERVER_UNIT, '..', name), 'utf8');

test('the flags node is given in ExecStart, up to the script', (t) => {
  t.deepEqual(nodeFlagsOfUnit('[Service]\nExecStart=/usr/bin/node --a=1 --b /usr/lib/x.cjs run --config c\n'), ['--a=1', '--b']);
  t.deepEqual(nodeFlagsOfUnit('[Service]\nExecStart=/usr/bin/node /usr/lib/x.cjs --not-a-node-flag\n'), []);
  t.throws(() => nodeFlagsOfUnit('[Service]\nExecStart=/bin/sh -c x\n'));
  t.throws(() => nodeFlagsOfUnit('[Service]\n'));
});

test('both server units fix the young generation, with the same flags', (t) => {
  const single = nodeFlagsOfUnit(unit('peerlink-server.service'));
  t.deepEqual(nodeFlagsOfUnit(unit('peerlink-server@.service')), single);
  const size = (flag: string): string | undefined => single.find((f) => f.startsWith(`--${flag}=`))?.split('=')[1];
  t.truthy(size('min-semi-space-size'));
  t.is(size('min-semi-space-size'), size('max-semi-space-size'));
});

test('the benches start every server, and every stand-in for its registration endpoint, with the unit flags', (t) => {
  t.deepEqual(serverNodeFlags(), nodeFlagsOfUnit(unit('peerlink-server.service')));
  const scripts = join(SERVER_UNIT, '..', '..', 'scripts');
  const files = [join(scripts, 'bench.ts'), ...readdirSync(join(scripts, 'bench')).map((f) => join(scripts, 'bench', f))];
  let servers = 0;
  for (const file of files.filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/startProgram\('server',[^\n]*/g)) {
      servers++;
      t.regex(m[0], /nodeArgs: serverNodeFlags\(\)/, `${file}: ${m[0]}`);
    }
    for (const m of text.matchAll(/run\([^\n]*script\('udp-target'\)[^\n]*/g))
      t.regex(m[0], /\.\.\.serverNodeFlags\(\)/, `${file}: ${m[0]}`);
  }
  t.true(servers >= 6, `${servers} server starts found`);
});
