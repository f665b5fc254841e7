/** Named event counters (dropped packets, refusals...), readable as a snapshot. */
export class Counters<K extends string> {
  private readonly values = new Map<K, number>();
  constructor(names: readonly K[]) {
    for (const n of names) this.values.set(n, 0);
  }
  inc(name: K, by = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + by);
  }
  get(name: K): number {
    return this.values.get(name) ?? 0;
  }
  snapshot(): Readonly<Record<K, number>> {
    return Object.freeze(Object.fromEntries(this.values)) as Record<K, number>;
  }
}
