import test from 'ava';
import { hintsMayRush, PathHint, relayAtOnceReason, type RelayAtOnceInput } from '../../agent/paths/relay-hint.js';

const base: RelayAtOnceInput = { hints: 0, deviceListens: false, lanDial: false, deviceMapping: 'symmetric' };

test('the relay starts at once only where no direct path can come', (t) => {
  // A client that takes nothing in, and a device whose NAT maps per destination: no dial, no punch.
  t.truthy(relayAtOnceReason({ ...base, hints: PathHint.NO_INBOUND }));
  // The client's memory: every direct path failed last time.
  t.truthy(relayAtOnceReason({ ...base, hints: PathHint.DIRECT_FAILED_BEFORE, deviceMapping: 'unknown' }));
  t.truthy(relayAtOnceReason({ ...base, hints: PathHint.DIRECT_FAILED_BEFORE, deviceMapping: 'endpoint-independent' }));
});

test('the direct paths keep their head start wherever one could come', (t) => {
  t.is(relayAtOnceReason(base), null, 'no hint: the client may take the dial');
  for (const deviceMapping of ['endpoint-independent', 'public', 'unknown'] as const)
    t.is(relayAtOnceReason({ ...base, hints: PathHint.NO_INBOUND, deviceMapping }), null, `a punch may meet (${deviceMapping})`);
  for (const hints of [PathHint.NO_INBOUND, PathHint.DIRECT_FAILED_BEFORE, 3]) {
    t.is(relayAtOnceReason({ ...base, hints, deviceListens: true }), null, 'the client may dial the device');
    t.is(relayAtOnceReason({ ...base, hints, lanDial: true }), null, 'one home');
  }
  // Bits this version does not know change nothing.
  t.is(relayAtOnceReason({ ...base, hints: 0xf8 }), null);
});

test("the client's own symmetric NAT (its hint) rules the punch out where the device's NAT does not", (t) => {
  const both = PathHint.NO_INBOUND | PathHint.SYMMETRIC_MAPPING;
  for (const deviceMapping of ['endpoint-independent', 'public', 'unknown'] as const) {
    t.regex(String(relayAtOnceReason({ ...base, hints: both, deviceMapping })), /its NAT maps per destination/);
    // The client may take the device's dial: its NAT alone does not rule that out.
    t.is(relayAtOnceReason({ ...base, hints: PathHint.SYMMETRIC_MAPPING, deviceMapping }), null);
    t.is(relayAtOnceReason({ ...base, hints: both, deviceMapping, deviceListens: true }), null, 'the client may dial the device');
    t.is(relayAtOnceReason({ ...base, hints: both, deviceMapping, lanDial: true }), null, 'one home');
  }
});

test('a relay win says nothing new of the direct paths only where the hints may have rushed it', (t) => {
  t.true(hintsMayRush(PathHint.DIRECT_FAILED_BEFORE));
  t.true(hintsMayRush(PathHint.NO_INBOUND | PathHint.SYMMETRIC_MAPPING));
  // NO_INBOUND alone rushes only with a symmetric device, which the client does not know: its
  // relay wins after the head start are remembered as before.
  t.false(hintsMayRush(PathHint.NO_INBOUND));
  t.false(hintsMayRush(PathHint.SYMMETRIC_MAPPING));
  t.false(hintsMayRush(0));
});
