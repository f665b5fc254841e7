/**
 * The port-mapping record (agent/nat/mapping-record.ts) outlives a crash in the state directory: it
 * round-trips, is gone after clear, and a file that is not one of ours is refused naming the file and
 * the field (the agent then only logs that it cannot replace an old mapping).
 */
import test from 'ava';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  clearMappingRecord,
  MAPPING_RECORD_FILE_NAME,
  MAPPING_RECORD_FORMAT,
  readMappingRecord,
  writeMappingRecord,
} from '../../agent/nat/mapping-record.js';

const RECORD = { via: 'upnp', gateway: '192.168.1.1', externalPort: 41565, internalPort: 41565, internalClient: '192.168.1.2' } as const;

test('a record round-trips through the state directory and is gone after clear', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-mapping-record-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.is(await readMappingRecord(dir), null, 'no file: no record');
  await writeMappingRecord(dir, RECORD);
  t.deepEqual(await readMappingRecord(dir), RECORD);
  t.is(JSON.parse(await readFile(join(dir, MAPPING_RECORD_FILE_NAME), 'utf8')).format, MAPPING_RECORD_FORMAT);
  await clearMappingRecord(dir);
  t.is(await readMappingRecord(dir), null);
  await t.notThrowsAsync(clearMappingRecord(dir), 'clearing twice is fine');
});

test('a file that is not a record of ours is refused, naming the file and the field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'peerlink-mapping-record-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, MAPPING_RECORD_FILE_NAME);
  const cases: [Record<string, unknown>, string][] = [
    [{ ...RECORD, format: 'other/1' }, 'format'],
    [{ ...RECORD, format: MAPPING_RECORD_FORMAT, via: 'pcp' }, 'via'],
    [{ ...RECORD, format: MAPPING_RECORD_FORMAT, externalPort: 0 }, 'externalPort'],
    [{ ...RECORD, format: MAPPING_RECORD_FORMAT, internalPort: 70000 }, 'internalPort'],
    [{ ...RECORD, format: MAPPING_RECORD_FORMAT, gateway: '' }, 'gateway'],
    [{ ...RECORD, format: MAPPING_RECORD_FORMAT, internalClient: 5 }, 'internalClient'],
  ];
  for (const [doc, field] of cases) {
    await writeFile(file, JSON.stringify(doc));
    const err = await t.throwsAsync(readMappingRecord(dir));
    t.true(err?.message.startsWith(`${file}: ${field}: expected`), err?.message);
  }
  await writeFile(file, '{not json');
  await t.throwsAsync(readMappingRecord(dir));
});
