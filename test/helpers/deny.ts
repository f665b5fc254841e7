/** Spec helpers for the operator's deny list (issue 19). */

/** Poll an async condition every 100 ms until it holds, or fail naming what was awaited. */
export async function waitUntilAsync(pred: () => Promise<boolean>, what: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await pred().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
