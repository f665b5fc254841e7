/**
 * Identity generations (issue 19, identity-name.ts): the name a device's identity goes by towards
 * the server, its registration key, the identity file's `generation`, and the deny list's
 * `ID@generation` entries.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { identityName, splitIdentityName } from '../../agent/protocol/identity-name.js';
import {
  encodeRegister,
  encodeRefuse,
  parseUdpPacket,
  RefuseReason,
  REGISTER_NONCE_BYTES,
  verifyTag,
  type Register,
} from '../../agent/protocol/udp-packets.js';
import { decodeFramePayload, encodeFrame, FrameType } from '../../agent/protocol/frames.js';
import { FRAME_HEADER_BYTES } from '../../agent/protocol/constants.js';
import { deriveRegistrationKey } from '../../agent/protocol/keys.js';
import { formatIdentity, parseIdentity } from '../../agent/protocol/identity-file.js';
import { createDenyList, isDenyEntry } from '../../agent/server/deny-list.js';
import { silentLogger } from '../../agent/common/logger.js';
import { createCa } from '../../agent/pki/ca.js';
import { createDeviceIdentity } from '../../agent/pki/device.js';

const master = Buffer.alloc(32, 9);

test('identity names: generation 0 is the ID alone; 1-255 are ID@g; the wire name splits back', (t) => {
  t.is(identityName('TV-1'), 'TV-1');
  t.is(identityName('TV-1', 0), 'TV-1');
  t.is(identityName('TV-1', 7), 'TV-1@7');
  t.throws(() => identityName('TV-1', 256));
  t.deepEqual(splitIdentityName('TV-1@255'), { equipmentId: 'TV-1', generation: 255 });
  t.deepEqual(splitIdentityName('TV-1'), { equipmentId: 'TV-1', generation: 0 });
});

test('REGISTER and REFUSE carry the generation; generation 0 is byte for byte the packet without one', (t) => {
  const nonce = Buffer.alloc(REGISTER_NONCE_BYTES, 1);
  const k0 = deriveRegistrationKey(master, 'TV-1');
  const k3 = deriveRegistrationKey(master, 'TV-1@3');
  t.notDeepEqual(k0, k3, 'each generation has its own registration key');
  t.deepEqual(
    encodeRegister({ equipmentId: 'TV-1', generation: 0, timestampMs: 5, nonce }, k0),
    encodeRegister({ equipmentId: 'TV-1', timestampMs: 5, nonce }, k0),
  );
  const parsed = parseUdpPacket(encodeRegister({ equipmentId: 'TV-1', generation: 3, timestampMs: 5, nonce }, k3));
  t.like(parsed.packet as Register, { equipmentId: 'TV-1', generation: 3 });
  t.true(verifyTag(parsed, k3));
  t.false(verifyTag(parsed, k0), "generation 0's key does not verify generation 3's packet");
  t.false('generation' in parseUdpPacket(encodeRegister({ equipmentId: 'TV-1', timestampMs: 5, nonce }, k0)).packet);
  t.like(
    parseUdpPacket(encodeRefuse({ equipmentId: 'TV-1', generation: 2, requestId: Buffer.alloc(16), reason: RefuseReason.STALE }, k0))
      .packet,
    { generation: 2 },
  );
  // Out of range or with a leading zero: malformed.
  for (const bad of ['TV-1@0', 'TV-1@256', 'TV-1@01', 'TV-1@']) {
    const buf = encodeRegister({ equipmentId: 'TV-1', timestampMs: 5, nonce }, k0);
    const forged = Buffer.concat([buf.subarray(0, 4), Buffer.from([bad.length]), Buffer.from(bad), buf.subarray(5 + 4)]);
    t.throws(() => parseUdpPacket(forged), undefined, bad);
  }
});

test('DEVICE_ATTACH and RELAY_JOIN_DEVICE carry the generation', (t) => {
  for (const type of [FrameType.DEVICE_ATTACH, FrameType.RELAY_JOIN_DEVICE] as const) {
    const f = { type, equipmentId: 'TV-1', generation: 9, requestId: Buffer.alloc(16, 2), proof: Buffer.alloc(32, 3) };
    t.deepEqual(decodeFramePayload(type, encodeFrame(f).subarray(FRAME_HEADER_BYTES)), f);
  }
});

test("the identity file: generation 1-255 kept; 0 written out as absent, written 0 or 256 refused; the registration key is the generation's", async (t) => {
  const ca = createCa({ commonName: 'test CA' });
  const { identity } = await createDeviceIdentity({ equipmentId: 'TV-1', masterKey: master, caCertPem: ca.certPem, generation: 4 });
  t.is(identity.generation, 4);
  t.deepEqual(identity.registrationKey, deriveRegistrationKey(master, 'TV-1@4'));
  const text = formatIdentity(identity);
  t.is(parseIdentity(text, 'id.toml').generation, 4);
  t.throws(() => parseIdentity(text.replace('generation = 4', 'generation = 0'), 'id.toml'), { message: /generation/ });
  t.throws(() => parseIdentity(text.replace('generation = 4', 'generation = 256'), 'id.toml'), { message: /generation/ });
  const first = await createDeviceIdentity({ equipmentId: 'TV-1', masterKey: master, caCertPem: ca.certPem });
  t.false(formatIdentity(first.identity).includes('generation'));
  t.deepEqual(first.identity.registrationKey, deriveRegistrationKey(master, 'TV-1'));
});

test('deny entries: ID denies every generation, ID@g only that one', async (t) => {
  t.true(isDenyEntry('TV-1@0'));
  t.true(isDenyEntry('TV-1@255'));
  for (const bad of ['TV-1@256', 'TV-1@01', 'TV-1@', '@1', 'TV 1']) t.false(isDenyEntry(bad), bad);
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-deny-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'deny.txt');
  await writeFile(file, 'TV-1@0\nTV-2\n');
  const list = createDenyList({ file, logger: silentLogger() });
  await list.start();
  t.teardown(() => list.stop());
  t.true(list.has('TV-1', 0));
  t.false(list.has('TV-1', 1), 'the re-provisioned generation is admitted');
  t.false(list.has('TV-1'), 'a generation-only entry does not deny the whole ID');
  t.true(list.has('TV-2', 5));
  t.true(list.has('TV-2'));
});
