/**
 * A failed port mapping is a PeerlinkError with a stable code, whichever protocol failed, and keeps
 * what the gateway said (its own result or error code) and what caused it.
 */
import test, { type ExecutionContext } from 'ava';
import { createServer } from 'node:http';
import { createSocket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, PeerlinkError } from '../../agent/common/errors.js';
import { NATPMP_PORT, NatPmpError, natPmpMapTcp } from '../../agent/nat/nat-pmp.js';
import { describeGateway, soapCall, UpnpError } from '../../agent/nat/upnp-igd.js';

/** A loopback address of its own: NAT-PMP answers must come from port 5351, and other runs may hold one. */
const someLoopback = (): string => `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(2, 255)}`;

test('NAT-PMP: a refusal is NATPMP_FAILED with the gateway result code', async (t) => {
  const gateway = someLoopback();
  const sock = createSocket('udp4');
  await new Promise<void>((resolve) => sock.bind(NATPMP_PORT, gateway, resolve));
  t.teardown(() => sock.close());
  sock.on('message', (msg, rinfo) => {
    const res = Buffer.alloc(16);
    res[1] = msg[1]! + 128;
    res.writeUInt16BE(2, 2); // not authorized or refused
    sock.send(res, rinfo.port, rinfo.address);
  });
  const err = await t.throwsAsync(
    natPmpMapTcp(gateway, { internalPort: 4000, externalPort: 4000, lifetimeS: 60 }, AbortSignal.timeout(5_000)),
  );
  t.true(err instanceof NatPmpError && err instanceof PeerlinkError);
  t.is((err as NatPmpError).code, ErrorCodes.NATPMP_FAILED);
  t.is((err as NatPmpError).resultCode, 2);
});

test('NAT-PMP: no answer is NATPMP_FAILED, caused by the deadline', async (t) => {
  const err = await t.throwsAsync(
    natPmpMapTcp(someLoopback(), { internalPort: 4000, externalPort: 4000, lifetimeS: 60 }, AbortSignal.timeout(300)),
  );
  t.is((err as NatPmpError).code, ErrorCodes.NATPMP_FAILED);
  t.is((err as NatPmpError).resultCode, undefined);
  t.truthy((err as Error).cause);
});

async function http(t: ExecutionContext, status: number, body: string): Promise<URL> {
  const srv = createServer((_req, res) => res.writeHead(status, { 'Content-Type': 'text/xml' }).end(body));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(() => srv.close());
  return new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/ctl`);
}

test('UPnP: a SOAP fault is UPNP_FAILED with the gateway error code', async (t) => {
  const controlUrl = await http(
    t,
    500,
    '<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>',
  );
  const service = { controlUrl, serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:1', version: 1 };
  const err = await t.throwsAsync(soapCall(service, 'AddPortMapping', {}, AbortSignal.timeout(5_000)));
  t.true(err instanceof UpnpError && err instanceof PeerlinkError);
  t.is((err as UpnpError).code, ErrorCodes.UPNP_FAILED);
  t.is((err as UpnpError).upnpCode, 718);
});

test('UPnP: a gateway that cannot be reached is UPNP_FAILED with the network error as cause', async (t) => {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const url = new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/rootDesc.xml`);
  await new Promise((resolve) => srv.close(resolve)); // nothing listens there now
  const err = await t.throwsAsync(describeGateway(url, AbortSignal.timeout(5_000)));
  t.is((err as UpnpError).code, ErrorCodes.UPNP_FAILED);
  t.truthy((err as Error).cause);
});
