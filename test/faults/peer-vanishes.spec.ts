/**
 * Fault: a tunnel's peer vanishes mid-transfer — the device's namespace loses its link (no FIN, no
 * RST) while the client streams bytes through the tunnel. Both ends must notice within the keepalive
 * bound (or, with bytes unacknowledged, the stall watch of agent/common/tunnel-liveness.ts) and free
 * what the session held: the client exits with a clear error, the agent ends the
 * session and its descriptors go back to what they were before. In the NAT lab (root).
 */
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { PROGRAMS } from '../../scripts/lib/program.js';
import { startRunningLab } from '../../scripts/lab/running-lab.js';
import { inNs } from '../../scripts/lab/exec.js';
import { TUNNEL_KEEPALIVE_MS } from '../../agent/protocol/constants.js';
import { DEVICE_KEEP_IDLE_MS } from '../../agent/device/kept-connection.js';
import { labTest } from '../helpers/lab-test.js';
import { figure, sleep } from '../helpers/faults.js';

/** libuv's keepalive: first probe after TUNNEL_KEEPALIVE_MS, then 10 probes 1 s apart. */
const KEEPALIVE_BOUND_MS = TUNNEL_KEEPALIVE_MS + 10 * 1_000;
const MARGIN_MS = 10_000;
const CHUNK = Buffer.alloc(1024, 0x61);

labTest('the device vanishes mid-transfer: both ends notice within the keepalive bound and free the session', async (t) => {
  t.timeout(KEEPALIVE_BOUND_MS * 2 + 120_000);
  const lab = await startRunningLab({ client: { nat: 'port-restricted' }, device: { nat: 'port-restricted' } });
  t.teardown(() => lab.stop());
  const agentPid = lab.agent.child.pid!;
  const fds = (): number => readdirSync(`/proc/${agentPid}/fd`).length;
  const fdsBefore = fds();

  const client = spawn('ip', ['netns', 'exec', lab.lab.client.host, process.execPath, PROGRAMS.client, ...lab.clientArgs], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.teardown(() => client.kill('SIGKILL'));
  let echoed = 0;
  let stderr = '';
  client.stdout.on('data', (d: Buffer) => (echoed += d.length));
  client.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  client.stdin.on('error', () => undefined);
  const exited = new Promise<number | null>((r) => client.once('exit', (code) => r(code)));
  // A steady stream: 1 KiB every 50 ms, so bytes are in flight when the link goes.
  const pump = setInterval(() => client.stdin.writable && client.stdin.write(CHUNK), 50);
  t.teardown(() => clearInterval(pump));
  const end = Date.now() + 60_000;
  while (echoed < 64 * 1024 && Date.now() < end) await sleep(100);
  t.true(echoed >= 64 * 1024, `the transfer runs (${echoed} bytes echoed): ${stderr}`);
  const path = /connected \S+ ?\S*/.exec(stderr)?.[0] ?? '?';

  const cutAt = Date.now();
  await inNs(lab.lab.device.host, ['ip', 'link', 'set', 'eth0', 'down']);
  const agentEnded = lab.agent
    .waitFor((l) => l.msg === 'S209 session ended' && typeof l.time === 'number' && l.time >= cutAt, KEEPALIVE_BOUND_MS + MARGIN_MS)
    .then(
      (l) => Number(l.time) - cutAt,
      () => null,
    );
  const clientCode = await Promise.race([exited, sleep(KEEPALIVE_BOUND_MS + MARGIN_MS).then(() => 'hang' as const)]);
  const clientMs = Date.now() - cutAt;
  clearInterval(pump);
  const said =
    stderr
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('{'))
      .at(-1) ?? '';
  figure(t, `peer vanishes mid-transfer (${path}): client notices after`, `${clientMs} ms, exit ${String(clientCode)}: ${said}`);
  const agentMs = await agentEnded;
  figure(t, 'peer vanishes mid-transfer: the agent ends the session after', agentMs === null ? 'never within the wait' : `${agentMs} ms`);
  // The agent keeps its attach connection to the server for server.keep_idle_ms after the verdict
  // (kept-connection.ts; the link is down, so it ends by its idle time): wait for that too.
  let fdsAfter = fds();
  const fdsBy = Date.now() + Math.max(5_000, cutAt - Date.now() + DEVICE_KEEP_IDLE_MS + 5_000);
  while (fdsAfter > fdsBefore && Date.now() < fdsBy) {
    await sleep(100);
    fdsAfter = fds();
  }
  figure(t, 'peer vanishes mid-transfer: agent descriptors before/after', `${fdsBefore}/${fdsAfter}`);
  t.not(clientCode, 'hang');
  t.true(clientMs <= KEEPALIVE_BOUND_MS + MARGIN_MS, `client noticed after ${clientMs} ms (bound ${KEEPALIVE_BOUND_MS} ms)`);
  t.not(agentMs, null, 'the agent ended the session');
  t.true((agentMs ?? Infinity) <= KEEPALIVE_BOUND_MS + MARGIN_MS, `agent noticed after ${agentMs} ms`);
  t.true(fdsAfter <= fdsBefore, `agent fds ${fdsBefore} -> ${fdsAfter}`);
});
