#!/usr/bin/env node
/**
 * npm run demo: the whole flow on loopback with the real programs and a throwaway PKI.
 * Prints each step of the patent's sequence (S201 ... S209) as the programs log it.
 */
import { createServer } from 'node:http';
import { get } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLoopbackSetup, connectArgs } from './lib/loopback-setup.js';
import { freePort } from './lib/free-port.js';
import { startProgram, type LogLine, type Program } from './lib/program.js';

const t0 = performance.now();
const stamp = (): string => `+${String(Math.round(performance.now() - t0)).padStart(5)} ms`;
const say = (who: string, text: string): void => void process.stdout.write(`${stamp()}  ${who.padEnd(7)} ${text}\n`);

const SHOWN = ['msg', 'level', 'time', 'pid', 'hostname', 'name', 'equipmentId'];
function show(who: string) {
  return (l: LogLine): void => {
    const important = typeof l.level === 'number' && l.level >= 40;
    if (typeof l.msg !== 'string' || (!/^S2\d\d/.test(l.msg) && !important)) return;
    const extra = Object.entries(l)
      .filter(([k]) => !SHOWN.includes(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    say(who, `${l.msg}${extra ? `  (${extra})` : ''}`);
  };
}

function fetchText(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/status' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function main(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-demo-'));
  const programs: Program[] = [];
  const appliance = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from the appliance's own HTTP API (you asked for ${req.url})\n`);
  });
  try {
    const applianceListen = await new Promise<{ port: number }>((resolve) =>
      appliance.listen(0, '127.0.0.1', () => resolve(appliance.address() as { port: number })),
    );
    say('demo', `throwaway PKI, identity and settings in ${dir}`);
    const setup = await createLoopbackSetup({ dir, services: { http: `127.0.0.1:${applianceListen.port}` } });
    say('demo', `appliance HTTP API on 127.0.0.1:${applianceListen.port}; device ${setup.equipmentId}, password ${setup.password}`);

    const server = startProgram('server', ['--config', setup.serverConfig], { onLine: show('server') });
    programs.push(server);
    await server.waitFor((l) => l.msg === 'rendezvous server listening');
    say('server', `listening: UDP 127.0.0.1:${setup.udpPort} (registrations), TLS 127.0.0.1:${setup.tlsPort} (requests)`);

    const agent = startProgram('agent', ['--config', setup.agentConfig], { onLine: show('agent') });
    programs.push(agent);
    say('agent', 'S201 sending its first registration over UDP');
    await agent.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S202 registered'));

    const listenPort = await freePort();
    const client = startProgram('client', [...connectArgs(setup, 'http'), '--listen', `127.0.0.1:${listenPort}`, '--log-level', 'info'], {
      onLine: show('client'),
    });
    programs.push(client);
    await client.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('S208 direct channel up'), 20_000);
    let body = '';
    for (let i = 0; i < 50 && !body; i++) {
      body = await fetchText(listenPort).catch(() => new Promise<string>((r) => setTimeout(() => r(''), 100)));
    }
    say('client', `S209 GET http://127.0.0.1:${listenPort}/status through the tunnel -> ${JSON.stringify(body.trim())}`);
    const ok = body.startsWith('hello from the appliance');
    await new Promise((r) => setTimeout(r, 200)); // let the session-end lines arrive
    say('demo', ok ? 'done: the flow worked end to end' : 'FAILED: unexpected answer');
    return ok ? 0 : 1;
  } finally {
    await Promise.all(programs.map((p) => p.stop()));
    await new Promise<void>((r) => appliance.close(() => r()));
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
