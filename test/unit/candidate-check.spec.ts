import test from 'ava';
import { checkListenCandidates } from '../../agent/server/candidate-check.js';
import { CandidateKind } from '../../agent/protocol/frames.js';

const seen = { address: '202.204.16.13', port: 40000 };
const listen = (address: string, port: number) => ({ kind: CandidateKind.LISTEN, endpoint: { address, port } });

test('a mapping on the address the server sees the device from is passed on', (t) => {
  t.deepEqual(checkListenCandidates([listen('202.204.16.13', 5000)], seen), [listen('202.204.16.13', 5000)]);
});

test('"0.0.0.0" and "::" mean the observed address', (t) => {
  t.deepEqual(checkListenCandidates([listen('0.0.0.0', 7001), listen('::', 7002)], seen), [
    listen('202.204.16.13', 7001),
    listen('202.204.16.13', 7002),
  ]);
});

test('a device cannot point the client at another host (a victim, the client LAN, an inner NAT)', (t) => {
  const bad = [listen('8.8.8.8', 53), listen('192.168.1.1', 80), listen('100.64.0.2', 5000), listen('127.0.0.1', 22)];
  t.deepEqual(checkListenCandidates(bad, seen), []);
});

test('only LISTEN candidates, no duplicates, nothing without an observed address', (t) => {
  const c = [
    listen('0.0.0.0', 7001),
    listen('202.204.16.13', 7001),
    { kind: CandidateKind.PUNCH, endpoint: { address: '202.204.16.13', port: 9 } },
  ];
  t.deepEqual(checkListenCandidates(c, seen), [listen('202.204.16.13', 7001)]);
  t.deepEqual(checkListenCandidates(c, undefined), []);
});
