/**
 * Abort `child` when `parent` aborts, for as long as the child is in use; the returned function
 * unlinks. Used instead of `AbortSignal.any([parent, ...])` where the parent lives for the whole
 * process (the agent's own signal): on Node 20 every AbortSignal.any() leaves a WeakRef in the long-
 * lived parent's set of dependants that is never removed, so a device serving a connection every few
 * seconds grew without bound (`npm run soak`: +330 WeakRef and +91 Timeout objects per 120 sessions,
 * RSS +18% in 15 minutes).
 */
export function followSignal(parent: AbortSignal, child: AbortController): () => void {
  if (parent.aborted) {
    child.abort(parent.reason);
    return () => undefined;
  }
  const onAbort = (): void => child.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  return () => parent.removeEventListener('abort', onAbort);
}
