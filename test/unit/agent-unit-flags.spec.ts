/**
 * The agent's systemd unit runs node with --single-threaded-gc (issue 15, docs/measurements.md, "The
 * agent's garbage collections": with V8's helper threads the agent made a full collection about once
 * per 40 MB relayed). The benches start their agents with the unit's flags, as they start their
 * servers with the server unit's (soak-server-flags.spec.ts), so that they measure what a device runs;
 * so does the soak.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { AGENT_UNIT, agentNodeFlags } from '../../scripts/lib/agent-unit.js';
import { nodeFlagsOfUnit } from '../../scripts/lib/server-unit.js';

test("the agent unit keeps V8's collector on the main thread", (t) => {
  const flags = nodeFlagsOfUnit(readFileSync(AGENT_UNIT, 'utf8'));
  t.true(flags.includes('--single-threaded-gc'), flags.join(' '));
  t.deepEqual(agentNodeFlags(), flags);
});

test("this node accepts the agent unit's flags (a misspelt flag stops node at start)", (t) => {
  const r = spawnSync(process.execPath, [...agentNodeFlags(), '-e', '0'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
});

test('the benches start every agent with the unit flags', (t) => {
  const scripts = join(AGENT_UNIT, '..', '..', 'scripts');
  const files = [join(scripts, 'bench.ts'), ...readdirSync(join(scripts, 'bench')).map((f) => join(scripts, 'bench', f))];
  let agents = 0;
  for (const file of files.filter((f) => f.endsWith('.ts'))) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/startProgram\('agent',[^\n]*/g)) {
      agents++;
      // tunnel-ab.ts reads each compared build's own flags (agentFlags) from that build.
      t.regex(m[0], /nodeArgs: (agentNodeFlags\(\)|agentFlags)/, `${file}: ${m[0]}`);
    }
  }
  t.true(agents >= 9, `${agents} agent starts found`);
});

test('the soak starts its agent with the unit flags', (t) => {
  const text = readFileSync(join(AGENT_UNIT, '..', '..', 'scripts', 'soak', 'systems.ts'), 'utf8');
  const starts = [...text.matchAll(/startProgram\('agent',[^\n]*/g)].map((m) => m[0]);
  t.is(starts.length, 1, starts.join('\n'));
  t.regex(starts[0]!, /nodeArgs: agentNodeFlags\(\)/);
});
