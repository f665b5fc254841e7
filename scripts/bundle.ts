#!/usr/bin/env node
/**
 * npm run bundle: the agent (and the server) as one JavaScript file each, runnable by plain
 * `node` without node_modules, for firmware images; plus the systemd units and the example
 * settings. Output: bundle/ (or --out DIR). Prints the sizes.
 */
import { copyFile, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';

/** The repository root (this file runs as dist/scripts/bundle.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const BUNDLE_PROGRAMS = {
  'peerlink-agent': 'agent/cli/peerlink-agent.ts',
  'peerlink-server': 'agent/cli/peerlink-server.ts',
} as const;
export const BUNDLE_EXTRAS = [
  ['systemd/peerlink-agent.service', 'systemd/peerlink-agent.service'],
  ['systemd/peerlink-server.service', 'systemd/peerlink-server.service'],
  ['systemd/peerlink-server@.service', 'systemd/peerlink-server@.service'],
  ['config/agent.example.toml', 'config/agent.example.toml'],
  ['config/server.example.toml', 'config/server.example.toml'],
  ['config/identity.example.toml', 'config/identity.example.toml'],
] as const;

export interface BundleResult {
  readonly dir: string;
  readonly files: ReadonlyArray<{ readonly file: string; readonly bytes: number; readonly gzipBytes: number }>;
}

/**
 * A CommonJS bundle has no import.meta. Dependencies that read a file next to themselves through
 * `createRequire(import.meta.url)` (e.g. @achingbrain/ssdp reading its package.json for the SSDP
 * signature) get that JSON inlined at build time instead; anything else using import.meta fails
 * the build rather than the device at run time.
 */
const inlineCreateRequireJson = {
  name: 'inline-create-require-json',
  setup(build: {
    onLoad: (o: { filter: RegExp }, cb: (a: { path: string }) => Promise<{ contents: string; loader: 'js' } | undefined>) => void;
  }) {
    build.onLoad({ filter: /node_modules[\\/].*\.js$/ }, async ({ path }) => {
      const source = await readFile(path, 'utf8');
      if (!source.includes('import.meta')) return undefined;
      const m = /const (\w+) = createRequire\(import\.meta\.url\);/.exec(source);
      if (!m) throw new Error(`${path}: uses import.meta, which a CommonJS bundle lacks`);
      const req = m[1]!;
      let contents = source.replace(m[0], '');
      contents = contents.replace(new RegExp(`\\b${req}\\('(\\.{1,2}/[^']+\\.json)'\\)`, 'g'), (_all, rel: string) =>
        JSON.stringify(JSON.parse(readFileSync(join(dirname(path), rel), 'utf8'))),
      );
      if (contents.includes('import.meta') || new RegExp(`\\b${req}\\(`).test(contents)) {
        throw new Error(`${path}: import.meta / ${req}() left after inlining; extend scripts/bundle.ts`);
      }
      return { contents, loader: 'js' };
    });
  },
};

export async function buildBundle(outDir: string): Promise<BundleResult> {
  // esbuild is a dev dependency: loaded here only, never by the programs.
  const esbuild = await import('esbuild');
  const dir = resolve(outDir);
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'systemd'), { recursive: true });
  await mkdir(join(dir, 'config'), { recursive: true });
  const files: Array<{ file: string; bytes: number; gzipBytes: number }> = [];
  for (const [name, entry] of Object.entries(BUNDLE_PROGRAMS)) {
    const outfile = join(dir, `${name}.cjs`);
    await esbuild.build({
      entryPoints: [join(REPO_ROOT, entry)],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      // CommonJS in a .cjs file: loaded as CommonJS wherever it lies, whatever package.json is near.
      format: 'cjs',
      minify: true,
      keepNames: true,
      legalComments: 'eof',
      logLevel: 'warning',
      plugins: [inlineCreateRequireJson],
      // The source's shebang is kept by esbuild.
    });
    const bytes = (await stat(outfile)).size;
    if (readFileSync(outfile, 'utf8').includes('import.meta')) throw new Error(`${outfile}: import.meta left in a CommonJS bundle`);
    files.push({ file: `${name}.cjs`, bytes, gzipBytes: gzipSync(readFileSync(outfile)).length });
  }
  for (const [from, to] of BUNDLE_EXTRAS) {
    await copyFile(join(REPO_ROOT, from), join(dir, to));
    files.push({ file: to, bytes: (await stat(join(dir, to))).size, gzipBytes: 0 });
  }
  return { dir, files };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const r = await buildBundle(values.out ?? join(REPO_ROOT, 'bundle'));
  process.stdout.write(`bundle: ${r.dir}\n`);
  for (const f of r.files) {
    process.stdout.write(
      `  ${f.file.padEnd(34)} ${(f.bytes / 1024).toFixed(1).padStart(8)} KiB${f.gzipBytes ? `  (gzip ${(f.gzipBytes / 1024).toFixed(1)} KiB)` : ''}\n`,
    );
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`bundle: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
