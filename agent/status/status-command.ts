/** `peerlink-agent status [--json]`: read the daemon's state file and print it. */
import { isPeerlinkError } from '../common/errors.js';
import { formatStatus } from './format-status.js';
import { readStateFile } from './state-file.js';

export const STATUS_EXIT_RUNNING = 0;
/** Like `systemctl status`: 3 when the program is not running (or its state cannot be read). */
export const STATUS_EXIT_NOT_RUNNING = 3;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

export async function statusCommand(o: { file: string; json: boolean; out: NodeJS.WritableStream; nowMs?: number }): Promise<number> {
  let state;
  try {
    state = await readStateFile(o.file);
  } catch (err) {
    const message = isPeerlinkError(err) ? err.message : String(err);
    if (o.json) o.out.write(`${JSON.stringify({ running: false, error: message })}\n`);
    else o.out.write(`peerlink-agent: not running or state unknown: ${message}\n`);
    return STATUS_EXIT_NOT_RUNNING;
  }
  const running = alive(state.pid);
  if (o.json) o.out.write(`${JSON.stringify({ running, ...state }, null, 2)}\n`);
  else o.out.write(formatStatus({ state, running, nowMs: o.nowMs ?? Date.now() }));
  return running ? STATUS_EXIT_RUNNING : STATUS_EXIT_NOT_RUNNING;
}
