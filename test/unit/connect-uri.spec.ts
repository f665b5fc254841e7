import test from 'ava';
import { formatConnectUri, parseConnectUri } from '../../agent/protocol/connect-uri.js';
import { qrPath } from '../../agent/pki/label.js';
import QRCode from 'qrcode';

test('connect URI round-trips; the password travels normalised', (t) => {
  const uri = formatConnectUri({ equipmentId: 'TV-000123', password: '7kq2-mz9t-xh4c-rw8p-3nvb', server: 'rv.example.com:7443' });
  t.is(uri, 'peerlink://connect?v=1&id=TV-000123&pw=7KQ2MZ9TXH4CRW8P3NVB&server=rv.example.com%3A7443');
  t.deepEqual(parseConnectUri(uri), { equipmentId: 'TV-000123', password: '7KQ2MZ9TXH4CRW8P3NVB', server: 'rv.example.com:7443' });
  t.deepEqual(parseConnectUri('peerlink://connect?v=1&id=A&pw=ab-cd'), { equipmentId: 'A', password: 'ABCD' });
});

test('connect URI: bad input is refused with PEERLINK_ERR_OPTIONS_INVALID', (t) => {
  for (const bad of [
    'https://connect?v=1&id=A&pw=B',
    'peerlink://connect?v=2&id=A&pw=B',
    'peerlink://connect?v=1&id=a%20b&pw=B',
    'peerlink://connect?v=1&id=A',
    'not a uri',
  ]) {
    t.throws(() => parseConnectUri(bad), { code: 'PEERLINK_ERR_OPTIONS_INVALID' }, bad);
  }
});

test('the label QR path draws exactly the dark modules of the code', (t) => {
  const text = 'peerlink://connect?v=1&id=A&pw=B';
  const { size, d } = qrPath(text);
  const qr = QRCode.create(text, { errorCorrectionLevel: 'M', maskPattern: 0 });
  t.is(size, qr.modules.size + 8);
  const drawn = [...d.matchAll(/h(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
  t.is(drawn, [...qr.modules.data].filter(Boolean).length);
});
