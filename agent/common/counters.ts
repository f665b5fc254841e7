/** Named event counters (dropped packets, refusals...), readable as a snapshot. */
export class Counters<K extends string> {
  // A plain object with fixed fields, not a Map: `inc` runs for every datagram a server takes,
  // and a field update is one property store where a Map costs a get and a set.
  private readonly values: Record<K, number>;
  constructor(names: readonly K[]) {
    const values = Object.create(null) as Record<K, number>;
    for (const n of names) values[n] = 0;
    this.values = values;
  }
  inc(name: K, by = 1): void {
    this.values[name] = (this.values[name] ?? 0) + by;
  }
  get(name: K): number {
    return this.values[name] ?? 0;
  }
  snapshot(): Readonly<Record<K, number>> {
    return Object.freeze({ ...this.values });
  }
}
