/**
 * The UPnP and SSDP parsers take what a device on the LAN sends: anything malformed or foreign is
 * ignored (null), never thrown; the right service is found in real description documents' shapes.
 */
import test from 'ava';
import { parseSearchResponse } from '../../agent/nat/ssdp.js';
import { findWanService } from '../../agent/nat/upnp-igd.js';

const answer = (st: string, location = 'http://192.168.1.1:5555/rootDesc.xml'): Buffer =>
  Buffer.from(
    `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: ${st}\r\nUSN: uuid:x::${st}\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\nLOCATION: ${location}\r\n\r\n`,
  );

test('SSDP: answers for IGD v1 and v2 give their description URL', (t) => {
  t.is(
    parseSearchResponse(answer('urn:schemas-upnp-org:device:InternetGatewayDevice:1'))?.location.href,
    'http://192.168.1.1:5555/rootDesc.xml',
  );
  t.is(
    parseSearchResponse(answer('urn:schemas-upnp-org:device:InternetGatewayDevice:2'))?.st,
    'urn:schemas-upnp-org:device:InternetGatewayDevice:2',
  );
});

test('SSDP: other devices, non-200 answers, bad or non-HTTP locations and garbage are ignored', (t) => {
  t.is(parseSearchResponse(answer('urn:schemas-upnp-org:device:MediaServer:1')), null);
  t.is(parseSearchResponse(Buffer.from('NOTIFY * HTTP/1.1\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n')), null);
  t.is(parseSearchResponse(answer('urn:schemas-upnp-org:device:InternetGatewayDevice:1', 'not a url')), null);
  t.is(parseSearchResponse(answer('urn:schemas-upnp-org:device:InternetGatewayDevice:1', 'file:///etc/passwd')), null);
  t.is(parseSearchResponse(Buffer.from([0xff, 0x00, 0x13])), null);
});

const description = (services: string, urlBase = ''): string => `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0">${urlBase}<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device>
<serviceList>${services}</serviceList></device></deviceList></device></deviceList></device></root>`;
const service = (type: string, control: string): string =>
  `<service><serviceType>${type}</serviceType><serviceId>urn:upnp-org:serviceId:x</serviceId><controlURL>${control}</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/x.xml</SCPDURL></service>`;

test('description: WANIPConnection v2 is preferred, then v1, then WANPPPConnection:1; control URLs resolve against the location or URLBase', (t) => {
  const loc = new URL('http://192.168.1.1:5555/rootDesc.xml');
  const both = description(
    service('urn:schemas-upnp-org:service:WANIPConnection:1', '/ctl/IPConn1') +
      service('urn:schemas-upnp-org:service:WANIPConnection:2', '/ctl/IPConn'),
  );
  t.like(findWanService(both, loc), { serviceType: 'urn:schemas-upnp-org:service:WANIPConnection:2', version: 2 });
  t.is(findWanService(both, loc)?.controlUrl.href, 'http://192.168.1.1:5555/ctl/IPConn');
  const v1 = findWanService(description(service('urn:schemas-upnp-org:service:WANIPConnection:1', 'ctl/IPConn')), loc);
  t.like(v1, { version: 1 });
  t.is(v1?.controlUrl.href, 'http://192.168.1.1:5555/ctl/IPConn');
  const ppp = findWanService(
    description(service('urn:schemas-upnp-org:service:WANPPPConnection:1', '/ppp'), '<URLBase>http://192.168.1.254:49000/</URLBase>'),
    loc,
  );
  t.is(ppp?.controlUrl.href, 'http://192.168.1.254:49000/ppp');
});

test('description: none of the WAN services, or garbage, gives null', (t) => {
  const loc = new URL('http://192.168.1.1:5555/rootDesc.xml');
  t.is(findWanService(description(service('urn:schemas-upnp-org:service:Layer3Forwarding:1', '/l3f')), loc), null);
  t.is(findWanService('<<<not xml', loc), null);
  t.is(findWanService(description(service('urn:schemas-upnp-org:service:WANIPConnection:1', '')), loc), null);
});

test('description: 256 KiB of unclosed openings is read in linear time and gives null', (t) => {
  const loc = new URL('http://192.168.1.1:5555/rootDesc.xml');
  // A lazy pattern retried from each opening took seconds on this (quadratic); a linear scan takes milliseconds.
  for (const hostile of ['<service>'.repeat(28_000), `<service>${'<serviceType>'.repeat(19_000)}`, '<URLBase>'.repeat(28_000)]) {
    const started = performance.now();
    t.is(findWanService(hostile, loc), null);
    t.true(performance.now() - started < 250, `took ${Math.round(performance.now() - started)} ms`);
  }
});
