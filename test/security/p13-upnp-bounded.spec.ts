/**
 * P13: a host on the device's LAN cannot use UPnP discovery against the agent. Any LAN host may
 * answer an SSDP search, so (a) an answer whose LOCATION is not on the host that sent it, or that
 * does not come from the default gateway, is ignored (nothing is fetched), and (b) whatever a
 * description or SOAP answer holds, the agent reads at most UPNP_MAX_BODY_BYTES of it and then
 * cuts the connection (RESPONSE_TOO_LARGE): before the fix a 40 MiB body cost +158 MiB RSS.
 */
import test, { type ExecutionContext } from 'ava';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { ErrorCodes } from '../../agent/common/errors.js';
import { searchGateways } from '../../agent/nat/ssdp.js';
import { describeGateway, UPNP_MAX_BODY_BYTES } from '../../agent/nat/upnp-igd.js';
import { LOOPBACK, waitUntil } from '../helpers/harness.js';

const MiB = 1024 * 1024;
/** Well above the limit, far below what reading it whole would take in RSS. */
const HUGE_BYTES = 64 * MiB;
const RSS_GROWTH_BOUND_BYTES = 32 * MiB;

async function httpServer(
  t: ExecutionContext,
  handler: (res: ServerResponse) => void,
): Promise<{ url: (path: string) => URL; sent: () => number; closed: () => number }> {
  let sent = 0;
  let closed = 0;
  const server: Server = createServer((_req, res) => {
    const write = res.write.bind(res);
    res.write = ((chunk: Buffer, ...rest: never[]) => {
      sent += chunk.length;
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.on('error', () => undefined);
    res.once('close', () => closed++);
    handler(res);
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const a = server.address();
  const port = typeof a === 'object' && a ? a.port : 0;
  return { url: (path) => new URL(`http://${LOOPBACK}:${port}${path}`), sent: () => sent, closed: () => closed };
}

/** Write `total` bytes (Infinity: for ever) as fast as the reader takes them. */
function pour(res: ServerResponse, total: number): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  let left = total;
  const more = (): void => {
    while (left > 0 && !res.destroyed) {
      left -= chunk.length;
      if (!res.write(chunk)) return void res.once('drain', more);
    }
    if (!res.destroyed) res.end();
  };
  more();
}

for (const [name, total] of [
  ['an endless', Infinity],
  ['a 64 MiB', HUGE_BYTES],
] as const) {
  test(`P13: ${name} description body (chunked, no length) is cut off at the limit with RESPONSE_TOO_LARGE, and RSS stays bounded`, async (t) => {
    const srv = await httpServer(t, (res) => {
      res.writeHead(200);
      pour(res, total);
    });
    const rssBefore = process.memoryUsage().rss;
    const err = await t.throwsAsync(describeGateway(srv.url('/rootDesc.xml'), AbortSignal.timeout(30_000)));
    const rssAfter = process.memoryUsage().rss;
    // The server's count is final once it has seen the agent hang up.
    await waitUntil(() => srv.closed() === 1, 'the server to see the connection close');
    t.log(
      `limit ${UPNP_MAX_BODY_BYTES} B; the server wrote ${(srv.sent() / MiB).toFixed(1)} MiB before the agent cut it; RSS +${((rssAfter - rssBefore) / MiB).toFixed(1)} MiB`,
    );
    t.is((err as { code?: string }).code, ErrorCodes.RESPONSE_TOO_LARGE, (err as Error).message);
    t.true(rssAfter - rssBefore < RSS_GROWTH_BOUND_BYTES, `RSS grew by ${rssAfter - rssBefore} bytes`);
    t.true(srv.sent() < HUGE_BYTES / 2, `the server could write ${srv.sent()} bytes`);
  });
}

test('P13: a body that declares a length above the limit is refused before it is read', async (t) => {
  const srv = await httpServer(t, (res) => {
    res.writeHead(200, { 'Content-Length': String(HUGE_BYTES) });
    pour(res, HUGE_BYTES);
  });
  const err = await t.throwsAsync(describeGateway(srv.url('/rootDesc.xml'), AbortSignal.timeout(30_000)));
  t.is((err as { code?: string }).code, ErrorCodes.RESPONSE_TOO_LARGE);
});

test('P13: a description whose control URL is on another host is refused (no SOAP to a third party)', async (t) => {
  const xml =
    '<?xml version="1.0"?><root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>' +
    '<controlURL>http://192.0.2.80/ctl</controlURL></service></serviceList></device></root>';
  const srv = await httpServer(t, (res) => res.end(xml));
  const err = await t.throwsAsync(describeGateway(srv.url('/rootDesc.xml'), AbortSignal.timeout(10_000)));
  t.is((err as { code?: string }).code, ErrorCodes.UPNP_FAILED);
});

async function udp(t: ExecutionContext, address: string): Promise<UdpSocket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, address, resolve));
  t.teardown(() => new Promise<void>((resolve) => s.close(() => resolve())));
  return s;
}

const answer = (location: string): Buffer =>
  Buffer.from(
    `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nUSN: uuid:x\r\nLOCATION: ${location}\r\n\r\n`,
  );

test('P13: SSDP answers whose LOCATION names another host, or that do not come from the default gateway, are ignored', async (t) => {
  // The "gateway" answers from 127.0.0.1; a second LAN host answers from 127.0.0.2.
  const gateway = await udp(t, '127.0.0.1');
  const other = await udp(t, '127.0.0.2');
  let answered = false;
  gateway.on('message', (_msg, from) => {
    if (answered) return;
    answered = true;
    const send = (s: UdpSocket, location: string): void => s.send(answer(location), from.port, from.address);
    send(gateway, 'http://127.0.0.2:5000/elsewhere.xml'); // the gateway's own answer, pointing away
    send(gateway, 'http://198.51.100.7/internet.xml');
    send(other, 'http://127.0.0.2:5000/other-host.xml'); // consistent, but not our gateway
    send(gateway, 'http://127.0.0.1:5000/rootDesc.xml'); // the only acceptable one
  });
  const accepted: string[] = [];
  const ignored: string[] = [];
  await searchGateways({
    timeoutMs: 600,
    gateway: '127.0.0.1',
    to: { address: '127.0.0.1', port: gateway.address().port },
    onAnswer: (l) => accepted.push(l.href),
    onIgnored: (l) => ignored.push(l.href),
  });
  t.deepEqual(accepted, ['http://127.0.0.1:5000/rootDesc.xml']);
  t.deepEqual(ignored.sort(), [
    'http://127.0.0.2:5000/elsewhere.xml',
    'http://127.0.0.2:5000/other-host.xml',
    'http://198.51.100.7/internet.xml',
  ]);
});

test('P13: with no default gateway known, no SSDP answer is accepted', async (t) => {
  const gateway = await udp(t, '127.0.0.1');
  gateway.on('message', (_msg, from) => gateway.send(answer('http://127.0.0.1:5000/rootDesc.xml'), from.port, from.address));
  const accepted: string[] = [];
  await searchGateways({
    timeoutMs: 300,
    gateway: null,
    to: { address: '127.0.0.1', port: gateway.address().port },
    onAnswer: (l) => accepted.push(l.href),
  });
  t.deepEqual(accepted, []);
});
