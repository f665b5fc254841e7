/**
 * A real UPnP IGD / NAT-PMP gateway on a lab router: miniupnpd with its nftables chains
 * (created here: Debian's init script does not, lab notes). IGD v2 is miniupnpd's default.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inNs, systemEnv } from './exec.js';

export const UPNP_KINDS = ['none', 'igd2', 'igd1', 'natpmp'] as const;
export type UpnpKind = (typeof UPNP_KINDS)[number];

const MINIUPNPD_TABLES = `
table inet filter {
  chain miniupnpd { }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
}
`;

export interface Gateway {
  stop(): Promise<void>;
}

export async function startGateway(o: { router: string; kind: Exclude<UpnpKind, 'none'>; dir: string; lanCidr: string }): Promise<Gateway> {
  await inNs(o.router, ['nft', '-f', '-'], MINIUPNPD_TABLES);
  const conf = join(o.dir, `miniupnpd-${o.router}.conf`);
  await writeFile(
    conf,
    [
      'ext_ifname=wan0',
      'listening_ip=lan0',
      'port=5555',
      `enable_upnp=${o.kind === 'natpmp' ? 'no' : 'yes'}`,
      'enable_natpmp=yes',
      o.kind === 'igd1' ? 'force_igd_desc_v1=yes' : '',
      'secure_mode=yes',
      'system_uptime=yes',
      `uuid=${crypto.randomUUID()}`,
      `allow 1024-65535 ${o.lanCidr} 1024-65535`,
      'deny 0-65535 0.0.0.0/0 0-65535',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', o.router, 'miniupnpd', '-d', '-f', conf, '-P', join(o.dir, `miniupnpd-${o.router}.pid`)],
    { stdio: ['ignore', 'ignore', 'pipe'], env: systemEnv() },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // Ready when it has bound its HTTP (5555) or NAT-PMP (5351) socket in the router.
  const port = o.kind === 'natpmp' ? ':5351' : ':5555';
  for (let i = 0; i < 100; i++) {
    const socks = await inNs(o.router, ['ss', '-lnptu']).catch(() => '');
    if (socks.includes(port)) break;
    if (child.exitCode !== null) throw new Error(`miniupnpd exited: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
