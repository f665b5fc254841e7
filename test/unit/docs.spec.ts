/**
 * The docs against the tree: every path the README, docs/ and the protocol spec name exists,
 * every property P-n of the security model has its spec, and every flag a documented command
 * line shows is one its program accepts. Docs that drift from the code fail here.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { REPO_ROOT } from '../../scripts/bundle.js';

const DOCS = [
  'README.md',
  'agent/protocol/README.md',
  ...readdirSync(join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const read = (f: string): string => readFileSync(join(REPO_ROOT, f), 'utf8');

/** Backticked repository paths (no globs or placeholders) and relative Markdown links. */
function namedPaths(file: string, text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/`((?:agent|scripts|test|config|systemd|docs|\.ci)\/[A-Za-z0-9_./-]+)`/g)) {
    const p = m[1]!.replace(/[.:,]+$/, '');
    if (!/[*<>]/.test(p)) out.push(resolve(REPO_ROOT, p));
  }
  for (const m of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
    if (!/^[a-z]+:/.test(m[1]!)) out.push(resolve(REPO_ROOT, dirname(file), m[1]!));
  }
  return out;
}

test('every path the docs name exists', (t) => {
  const missing: string[] = [];
  let named = 0;
  for (const f of DOCS) {
    for (const p of namedPaths(f, read(f))) {
      named++;
      // A compiled name (dist/...) or a .js twin of a .ts source is named as the source.
      if (!existsSync(p) && !existsSync(p.replace(/\.js$/, '.ts'))) missing.push(`${f}: ${p.slice(REPO_ROOT.length)}`);
    }
  }
  t.true(named > 50, `${named} paths named`);
  t.deepEqual(missing, []);
});

test('every property of the security model has its spec under test/security/', (t) => {
  const specs = readdirSync(join(REPO_ROOT, 'test', 'security'));
  const ids = [...read('docs/security.md').matchAll(/\*\*(P\d+b?)\*\*/g)].map((m) => m[1]!.toLowerCase());
  t.true(ids.length >= 14, `found ${ids.length} properties`);
  for (const id of ids)
    t.true(
      specs.some((s) => s.startsWith(`${id}-`) && s.endsWith('.spec.ts')),
      `${id} has test/security/${id}-*.spec.ts`,
    );
});

/** The source files that define each documented program's flags. */
const PROGRAMS: readonly (readonly [RegExp, readonly string[]])[] = [
  [/\bpeerlink-provision\b/, ['scripts/provision.ts']],
  [/\bpeerlink-agent\b/, ['agent/cli/peerlink-agent.ts', 'agent/diagnose/cli.ts']],
  [/\bpeerlink-server\b/, ['agent/cli/peerlink-server.ts']],
  [/\bnpm run lab\b/, ['scripts/lab/lab.ts']],
  [/\bnpm run bench\b/, ['scripts/bench.ts', 'scripts/bench/agent.ts', 'scripts/bench/server.ts', 'scripts/bench/fleet.ts']],
  [/\bnpm run fuzz\b/, ['scripts/fuzz.ts']],
  [/\bnpm run soak\b/, ['scripts/soak.ts']],
  [/\bpeerlink\b(?!-)/, ['agent/cli/peerlink.ts']],
];

/** Command lines in the docs' shell code blocks (fences read in order; continuation lines joined). */
function commandLines(text: string): string[] {
  const out: string[] = [];
  let block: string[] | null = null;
  let shell = false;
  for (const line of text.split('\n')) {
    const fence = /^\s*```(\S*)/.exec(line);
    if (fence) {
      if (block === null) {
        block = [];
        shell = ['', 'sh', 'bash', 'console', 'shell'].includes(fence[1]!);
      } else {
        if (shell) {
          for (const l of block
            .join('\n')
            .replace(/\\\n\s*/g, ' ')
            .split('\n'))
            if (!l.trimStart().startsWith('#')) out.push(l.replace(/\s#.*$/, ''));
        }
        block = null;
      }
      continue;
    }
    block?.push(line);
  }
  return out;
}

test('every flag a documented command shows is one its program accepts', (t) => {
  const unknown: string[] = [];
  let checked = 0;
  for (const f of DOCS) {
    for (const line of commandLines(read(f))) {
      const program = PROGRAMS.find(([re]) => re.test(line));
      if (!program) continue;
      // Only what follows the program's name: flags before it belong to another command (ssh, npm).
      const at = line.search(program[0]);
      const sources = program[1].map(read).join('\n');
      for (const m of line.slice(at).matchAll(/(?:^|\s)--([a-z][a-z0-9-]*)/g)) {
        checked++;
        const flag = m[1]!;
        if (!new RegExp(`['"\`]${flag}['"\`]|\\b${flag.replace(/-/g, '[-_]?')}\\s*:|--${flag}\\b`).test(sources))
          unknown.push(`${f}: --${flag} (${line.trim().slice(0, 80)})`);
      }
    }
  }
  t.true(checked > 20, `checked ${checked} flags`);
  t.deepEqual(unknown, []);
});
