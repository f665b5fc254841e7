#!/usr/bin/env node
/**
 * npm test: installs what the specs need when it can (root with apt-get; one line says what and
 * why, nothing when all is present), runs ava with any arguments given, then closes with a summary
 * that names every spec group it skipped and the one command that runs it. Under CI a skipped
 * group fails the run: CI must run every spec.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ensureGroups, GROUP_NAMES, GROUPS, commandToRun, RUNNER_ENV, unmetReason, type GroupName } from './lib/prerequisites.js';

const say = (line: string): void => void process.stdout.write(`test: ${line}\n`);
const AVA_OUTPUT_TAIL_LINES = 30;

const installed = ensureGroups(GROUP_NAMES, say);
if (!installed.ok) {
  const tail = installed.output.trim().split('\n').slice(-AVA_OUTPUT_TAIL_LINES).join('\n');
  process.stderr.write(`test: apt-get failed; the groups that need those packages will be skipped:\n${tail}\n`);
}

const skipped = GROUP_NAMES.map((g) => [g, unmetReason(g)] as const).filter((e): e is readonly [GroupName, string] => e[1] !== null);
for (const [g, reason] of skipped) say(`skipping ${GROUPS[g].name} specs (${GROUPS[g].specs}): ${reason}`);

const require = createRequire(import.meta.url);
// ava exports only its entry points; the CLI sits beside the main one.
const avaCli = join(dirname(require.resolve('ava')), 'cli.mjs');
const ava = spawn(process.execPath, [avaCli, ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, [RUNNER_ENV]: '1' } });
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => ava.kill(signal));

ava.once('exit', (code, signal) => {
  const avaCode = code ?? (signal ? 1 : 0);
  if (skipped.length === 0) {
    say(`every spec group ran (${GROUP_NAMES.map((g) => GROUPS[g].name).join(', ')})`);
    process.exit(avaCode);
  }
  say('SKIPPED, not failed:');
  for (const [g, reason] of skipped) say(`  ${GROUPS[g].name} (${GROUPS[g].specs}): ${reason}; to run them: ${commandToRun(g)}`);
  if (process.env.CI === 'true') {
    say('CI=true: every group must run here, so this run fails');
    process.exit(avaCode === 0 ? 1 : avaCode);
  }
  process.exit(avaCode);
});
