/**
 * Named nftables counters in a lab namespace (a router, a WAN host): packets and bytes matching a
 * rule, counted by the kernel where they pass, read back with `nft -j`. What a spec measures
 * this way is what crossed that namespace's interfaces, whatever the programs say about it.
 */
import { inNs } from './exec.js';

export type CounterHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

export interface CounterSpec {
  /** The counter's name (a-z 0-9 _). */
  readonly name: string;
  /** Where it counts: forward for a router's through traffic; prerouting/postrouting see every packet in or out. */
  readonly hook: CounterHook;
  /** nftables match expressions, e.g. `iifname "lan0" ip daddr 130.74.23.6 tcp dport 7443`. */
  readonly match: string;
}

export interface CounterValue {
  readonly packets: number;
  readonly bytes: number;
}

/** The table all counters of a namespace live in (its own, apart from the NAT's rules). */
export const COUNTER_TABLE = 'lab_count';
/**
 * Before the NAT's own filter (priority 0) and its dnat (-100), so that every packet is counted
 * as it arrived, whatever those rules then do with it. Counting only: every chain accepts.
 */
const PRIORITY = -150;

/** Add counters to namespace `ns` (one chain per hook, policy accept; nothing is dropped). */
export async function installCounters(ns: string, specs: readonly CounterSpec[]): Promise<void> {
  for (const s of specs) {
    if (!/^[a-z0-9_]+$/.test(s.name)) throw new Error(`lab counter: name must be a-z 0-9 _, found ${JSON.stringify(s.name)}`);
  }
  const hooks = [...new Set(specs.map((s) => s.hook))];
  const ruleset = [
    `table ip ${COUNTER_TABLE} {`,
    ...specs.map((s) => `  counter ${s.name} { }`),
    ...hooks.map((h) =>
      [
        `  chain count_${h} {`,
        `    type filter hook ${h} priority ${PRIORITY}; policy accept;`,
        ...specs.filter((s) => s.hook === h).map((s) => `    ${s.match} counter name "${s.name}"`),
        '  }',
      ].join('\n'),
    ),
    '}',
    '',
  ].join('\n');
  await inNs(ns, ['nft', '-f', '-'], ruleset);
  // A counter whose rule did not load would read 0 for ever: a spec would pass on nothing.
  for (const s of specs) await readCounter(ns, s.name);
}

/** The counter's packets and bytes so far. */
export async function readCounter(ns: string, name: string): Promise<CounterValue> {
  const out = await inNs(ns, ['nft', '-j', 'list', 'counter', 'ip', COUNTER_TABLE, name]);
  const doc = JSON.parse(out) as { nftables?: { counter?: { name: string; packets: number; bytes: number } }[] };
  const c = doc.nftables?.find((e) => e.counter?.name === name)?.counter;
  if (!c) throw new Error(`lab counter ${name} not found in ${ns}: ${out.slice(0, 200)}`);
  return { packets: c.packets, bytes: c.bytes };
}

/** Every counter of namespace `ns`, by name (for a spec's log). */
export async function readCounters(ns: string, names: readonly string[]): Promise<Record<string, CounterValue>> {
  const out: Record<string, CounterValue> = {};
  for (const n of names) out[n] = await readCounter(ns, n);
  return out;
}
