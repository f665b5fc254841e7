/**
 * Streams waiting for the device's answer (mux-session.ts, client-session.ts): all wait the same
 * time, so they expire in the order they were added, and one timer for the oldest serves them all
 * (not a timer made and cleared per stream, which cost per stream in the web page's profile).
 */

export interface AnswerDeadlines<T> {
  /** `item` (a stream to `service`) waits from now; expired (the callback) unless deleted within the wait. */
  add(item: T, service: string): void;
  /** It was answered (or is gone): no expiry. Whether it was waiting. */
  delete(item: T): boolean;
  /** Nothing expires any more (the session ended). */
  clear(): void;
}

/** `waitMs` 0: nothing expires (the device's end of a session, which waits for no answers). */
export function createAnswerDeadlines<T>(waitMs: number, onExpired: (item: T, service: string) => void): AnswerDeadlines<T> {
  // Oldest first: a Map keeps insertion order, and every deadline is its insertion time plus waitMs.
  const waiting = new Map<T, { readonly service: string; readonly deadline: number }>();
  let timer: NodeJS.Timeout | null = null;

  function arm(): void {
    timer = null;
    const oldest = waiting.values().next();
    if (oldest.done) return;
    timer = setTimeout(expire, Math.max(0, oldest.value.deadline - performance.now()));
    timer.unref();
  }
  function expire(): void {
    const now = performance.now();
    for (const [item, w] of waiting) {
      if (w.deadline > now) break;
      waiting.delete(item);
      onExpired(item, w.service);
    }
    arm();
  }

  return {
    add(item, service) {
      if (waitMs <= 0) return;
      waiting.set(item, { service, deadline: performance.now() + waitMs });
      if (!timer) arm();
    },
    delete: (item) => waiting.delete(item),
    clear() {
      if (timer) clearTimeout(timer);
      timer = null;
      waiting.clear();
    },
  };
}
