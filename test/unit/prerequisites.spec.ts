/**
 * The test runner's view of the system: programs are looked up on the system PATH only (npm puts
 * node_modules/.bin first, where a package called `nft` would pass for nftables), and a group's
 * verdict follows what is installed and who runs it.
 */
import test from 'ava';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GROUP_NAMES, GROUPS, commandToRun, hasCommand, isRoot, missing, unmetReason } from '../../scripts/lib/prerequisites.js';

test('a program is found on the system PATH, and only there', async (t) => {
  t.true(hasCommand('sh'));
  t.false(hasCommand('peerlink-no-such-program'));
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-prereq-'));
  const saved = process.env.PATH;
  try {
    await writeFile(join(dir, 'peerlink-fake-tool'), '#!/bin/sh\n');
    await chmod(join(dir, 'peerlink-fake-tool'), 0o755);
    process.env.PATH = `${dir}:${saved ?? ''}`;
    t.false(hasCommand('peerlink-fake-tool'), 'a program on the caller PATH (node_modules/.bin) does not count');
  } finally {
    process.env.PATH = saved;
    await rm(dir, { recursive: true, force: true });
  }
});

test('every group names its specs, why, and a Debian package for each program', (t) => {
  for (const g of GROUP_NAMES) {
    t.true(GROUPS[g].specs.startsWith('test/'), g);
    t.true(GROUPS[g].why.length > 0, g);
    for (const r of GROUPS[g].requires) t.true(r.packages.length > 0, `${g}: ${r.command}`);
  }
});

test('a group is ready exactly when its programs are present and, if it needs root, this is root', (t) => {
  for (const g of GROUP_NAMES) {
    const expectReady = missing(g).length === 0 && (!GROUPS[g].needsRoot || isRoot());
    t.is(unmetReason(g) === null, expectReady, g);
    if (!expectReady) t.regex(commandToRun(g), /npm test/, g);
  }
});
