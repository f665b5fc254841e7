/**
 * The Redis Cluster hash slot of a key (CRC16/XMODEM of the key, or of its hash tag, mod 16384),
 * as the cluster computes it: the Redis registry groups a batch of writes by the primary that
 * owns each key's slot, so one script call per primary carries them (redis-registry.ts).
 */
const TABLE = new Uint16Array(256);
for (let i = 0; i < 256; i++) {
  let c = i << 8;
  for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  TABLE[i] = c;
}

export const CLUSTER_SLOTS = 16384;

export function keySlot(key: string): number {
  const open = key.indexOf('{');
  let s = key;
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) s = key.slice(open + 1, close);
  }
  const bytes = Buffer.from(s, 'utf8');
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ b) & 0xff]!;
  return crc % CLUSTER_SLOTS;
}
