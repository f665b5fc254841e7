/**
 * Validation of a settings document (parsed TOML) that collects every problem at once,
 * each naming the file, the key path, what was expected and what was found.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import { ConfigError } from './errors.js';
import { hostProblem } from './endpoint-parse.js';

type Doc = Record<string, unknown>;

function found(value: unknown): string {
  if (value === undefined) return 'nothing (missing)';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (value !== null && typeof value === 'object') return 'a table';
  return `${typeof value} ${JSON.stringify(value)}`;
}

export class SettingsChecker {
  readonly problems: string[] = [];
  constructor(readonly file: string) {}

  problem(path: string, expected: string, value: unknown): void {
    this.problems.push(`${this.file}: ${path}: expected ${expected}, found ${found(value)}`);
  }

  /** A sub-table (missing -> empty); unknown keys in it are reported. */
  table(doc: Doc, key: string, path: string, allowed: readonly string[]): Doc {
    const v = key === '' ? doc : doc[key];
    if (v === undefined) return {};
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      this.problem(path, 'a table', v);
      return {};
    }
    this.unknownKeys(v as Doc, path, allowed);
    return v as Doc;
  }

  unknownKeys(doc: Doc, path: string, allowed: readonly string[], hint?: (key: string) => string | undefined): void {
    for (const k of Object.keys(doc)) {
      if (!allowed.includes(k)) {
        const full = path ? `${path}.${k}` : k;
        this.problems.push(`${this.file}: ${full}: unknown key${hint?.(k) ?? ''} (expected one of ${allowed.join(', ')})`);
      }
    }
  }

  str(doc: Doc, key: string, path: string, opts: { default?: string; pattern?: RegExp; expect?: string } = {}): string {
    const v = doc[key];
    if (v === undefined && opts.default !== undefined) return opts.default;
    if (typeof v !== 'string' || (opts.pattern && !opts.pattern.test(v))) {
      this.problem(path, opts.expect ?? 'a string', v);
      return opts.default ?? '';
    }
    return v;
  }

  /**
   * A host: an IPv4 or IPv6 literal (brackets allowed and removed: "[::]") or a name that may
   * resolve to either family (endpoint-parse.ts).
   */
  host(doc: Doc, key: string, path: string, opts: { default?: string; expect?: string } = {}): string {
    const v = doc[key];
    if (v === undefined && opts.default !== undefined) return opts.default;
    const problem = typeof v === 'string' ? hostProblem(v) : 'not a string';
    if (typeof v !== 'string' || problem !== null) {
      this.problems.push(
        `${this.file}: ${path}: expected ${opts.expect ?? 'an IPv4 or IPv6 address or a host name'}, found ${found(v)}${typeof v === 'string' ? ` (${problem})` : ''}`,
      );
      return opts.default ?? '';
    }
    return v.startsWith('[') ? v.slice(1, -1) : v;
  }

  int(doc: Doc, key: string, path: string, opts: { default?: number; min: number; max: number }): number {
    const v = doc[key];
    if (v === undefined && opts.default !== undefined) return opts.default;
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < opts.min || n > opts.max) {
      this.problem(path, `an integer from ${opts.min} to ${opts.max}`, v);
      return opts.default ?? opts.min;
    }
    return n;
  }

  bool(doc: Doc, key: string, path: string, def: boolean): boolean {
    const v = doc[key];
    if (v === undefined) return def;
    if (typeof v !== 'boolean') {
      this.problem(path, 'true or false', v);
      return def;
    }
    return v;
  }

  enumOf<T extends string>(doc: Doc, key: string, path: string, values: readonly T[], def: T): T {
    const v = doc[key];
    if (v === undefined) return def;
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      this.problem(path, `one of ${values.join(', ')}`, v);
      return def;
    }
    return v as T;
  }

  throwIfAny(): void {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Read and parse a TOML settings file; a read or syntax error names the file (and line). */
export async function readTomlFile(file: string): Promise<Doc> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read settings file: ${(err as Error).message}`], { cause: err });
  }
  return parseTomlText(text, file);
}

export function parseTomlText(text: string, file: string): Doc {
  try {
    return parseToml(text) as Doc;
  } catch (err) {
    throw new ConfigError([`${file}: not valid TOML: ${(err as Error).message.split('\n')[0]}`], { cause: err });
  }
}
