/**
 * A clock that moves only when a spec says so: a `Timers` (agent/common/timers.ts) whose
 * advance(ms) fires every timer that falls due, in time order (ties in the order they were
 * set), and lets promises and pending I/O callbacks settle after each one. A spec injects it
 * as a component's `timers` (and `clock`) and asserts on what happened at exact instants,
 * instead of sleeping on the real clock and hoping the machine kept up.
 */
import { sleepWith, type TimerHandle, type Timers } from '../../agent/common/timers.js';

interface Entry {
  readonly id: number;
  at: number;
  readonly fn: () => void;
  readonly everyMs: number | null;
}

class ManualHandle implements TimerHandle {
  private refed = true;
  constructor(readonly id: number) {}
  unref(): this {
    this.refed = false;
    return this;
  }
  ref(): this {
    this.refed = true;
    return this;
  }
  hasRef(): boolean {
    return this.refed;
  }
}

/** Lets queued microtasks and already-due I/O callbacks run (setImmediate runs after both). */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

export class ManualClock implements Timers {
  private nowMs: number;
  private nextId = 1;
  private readonly entries = new Map<number, Entry>();

  /** Starts at `startMs` (default: a fixed instant, so specs do not depend on today's date). */
  constructor(startMs = Date.UTC(2026, 0, 1)) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, Math.max(1, ms));
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle instanceof ManualHandle) this.entries.delete(handle.id);
  }

  clearInterval(handle: TimerHandle | undefined): void {
    this.clearTimeout(handle);
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return sleepWith(this, ms, signal);
  }

  /** Timers scheduled and not yet fired or cleared. */
  get pending(): number {
    return this.entries.size;
  }

  /**
   * Move time forward by `ms`, firing each timer that falls due at its own instant (now() reads
   * that instant inside the callback), with promises settling between timers. A timer set by a
   * callback fires in the same advance if it falls due before the end.
   */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`advance: ${ms}: not a non-negative number of ms`);
    const end = this.nowMs + ms;
    await settle();
    for (let e = this.nextDue(end); e; e = this.nextDue(end)) {
      this.nowMs = e.at;
      if (e.everyMs === null) this.entries.delete(e.id);
      else e.at += e.everyMs;
      e.fn();
      await settle();
    }
    this.nowMs = end;
    await settle();
  }

  private add(fn: () => void, ms: number, everyMs: number | null): TimerHandle {
    const id = this.nextId++;
    // Node treats a delay below 1 (or not a number) as 1 ms.
    const delay = Number.isFinite(ms) && ms >= 1 ? ms : 1;
    this.entries.set(id, { id, at: this.nowMs + delay, fn, everyMs });
    return new ManualHandle(id);
  }

  /** The earliest entry due at or before `end` (Map keeps insertion order, so ties go to the earlier set). */
  private nextDue(end: number): Entry | undefined {
    let best: Entry | undefined;
    for (const e of this.entries.values()) if (e.at <= end && (!best || e.at < best.at)) best = e;
    return best;
  }
}
