/** The lab's safety: it refuses to run with a link out of the lab, and leaves nothing behind. */
import { run } from '../../scripts/lab/exec.js';
import { runCell } from '../../scripts/lab/cell.js';
import { assertIsolated, createLab, LAB_PREFIX } from '../../scripts/lab/topology.js';
import { labTest } from '../helpers/lab-test.js';

const labNamespaces = async (id: string): Promise<string[]> =>
  (await run(['ip', 'netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(id));

labTest('a lab namespace with a link to the host namespace is refused before any traffic', async (t) => {
  const lab = await createLab({ client: { nat: 'port-restricted' }, device: { nat: 'symmetric' } });
  try {
    await t.notThrowsAsync(assertIsolated(lab));
    // A veth whose peer is in the host's own namespace: a way out.
    const hostEnd = `plx${process.pid % 100000}`;
    await run(['ip', 'link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', 'leak0', 'netns', lab.device.host]);
    try {
      const err = await t.throwsAsync(assertIsolated(lab));
      t.regex(err?.message ?? '', /leak0/);
    } finally {
      await run(['ip', 'link', 'del', hostEnd]).catch(() => undefined);
    }
  } finally {
    await lab.destroy();
  }
  t.deepEqual(await labNamespaces(lab.id), []);
});

labTest('a failing run removes every namespace and process it made', async (t) => {
  const before = await labNamespaces(`${LAB_PREFIX}${process.pid}x`);
  // No mapping and no relay: this run cannot connect.
  const r = await runCell({
    client: { nat: 'symmetric' },
    device: { nat: 'double' },
    upnp: 'none',
    peerTimeoutMs: 1000,
    serverExtra: '[relay]\nmax_sessions = 0',
  });
  t.false(r.connected);
  t.deepEqual(await labNamespaces(`${LAB_PREFIX}${process.pid}x`), before);
  const stray = (await run(['pgrep', '-f', `miniupnpd-${LAB_PREFIX}${process.pid}x`]).catch(() => '')).trim();
  t.is(stray, '');
});
