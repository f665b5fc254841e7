/**
 * The protocol's test vectors (agent/protocol/test-vectors.json) are what this code computes:
 * a change to any key derivation, packet or frame fails here until the vectors are regenerated
 * (`npm run vectors`) on purpose, with the protocol spec's versioning rule in mind.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { computeVectors, formatVectors, VECTORS_FILE } from '../../scripts/vectors.js';

test('the code reproduces every test vector exactly', async (t) => {
  const file = JSON.parse(await readFile(VECTORS_FILE, 'utf8')) as { vectors: { name: string; output: string }[] };
  const now = await computeVectors();
  t.true(now.length >= 30, `${now.length} vectors`);
  t.deepEqual(
    now.map((v) => v.name),
    file.vectors.map((v) => v.name),
    'the same vectors, in the same order',
  );
  for (const [i, v] of now.entries()) t.is(v.output, file.vectors[i]!.output, v.name);
  t.is(formatVectors(now), await readFile(VECTORS_FILE, 'utf8'), 'inputs and outputs, byte for byte');
});
