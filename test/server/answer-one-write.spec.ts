/**
 * A connection request's answer leaves the server in one write: the relay offer (and the device's
 * relay plan, for a client that knows plans), the path
 * candidates, the result and the HELLO for the next request (client-connection.ts corks the
 * connection while its request is served). Each TLS record is one 'data' event at the client, so
 * the answer arrives as one record, not four. (Each write cost the server more CPU than the
 * frame's own work: bench server --only connect, docs/performance.md.)
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { FrameChannel } from '../../agent/protocol/frame-channel.js';
import { FrameType, type Frame } from '../../agent/protocol/frames.js';
import { deriveRequestTagKey, NONCE_BYTES } from '../../agent/protocol/keys.js';
import { sealRequest } from '../../agent/protocol/request.js';
import { Status } from '../../agent/protocol/status.js';
import { connectToServer } from '../../agent/rendezvous/server-tls.js';
import { acceptor, EQUIPMENT_ID, SERVICE, world } from '../helpers/fake-client.js';
import { LOOPBACK, Scope } from '../helpers/harness.js';
import { wakeFor } from '../helpers/wake.js';

const scope = new Scope();
test.after.always(() => scope.run());

test("an accepted request's relay offer and plan, candidates, result and next HELLO arrive as one TLS record", async (t) => {
  const w = await world(scope);
  const acc = await acceptor(scope);
  const tls = await connectToServer({ host: LOOPBACK, port: w.tlsPort, serverName: 'localhost', caPem: w.caPem });
  t.teardown(() => tls.destroy());
  const channel = new FrameChannel(tls);
  const hello = await channel.next(5000);
  if (hello.type !== FrameType.HELLO) return t.fail('expected HELLO');
  const sealed = sealRequest(
    {
      clientNonce: randomBytes(NONCE_BYTES),
      timestampMs: hello.serverTimeMs,
      equipmentId: EQUIPMENT_ID,
      service: SERVICE,
      advertisedPort: acc.port,
    },
    deriveRequestTagKey(w.identity.accessKey),
  );
  let records = 0;
  tls.on('data', () => records++);
  channel.send({
    type: FrameType.CONNECT_REQUEST,
    equipmentId: EQUIPMENT_ID,
    advertisedPort: acc.port,
    wake: wakeFor(w.identity.accessKey, EQUIPMENT_ID, sealed),
    sealedRequest: sealed,
  });
  const frames: Frame[] = [];
  do frames.push(await channel.next(15_000));
  while (frames.at(-1)!.type !== FrameType.HELLO);
  t.deepEqual(
    frames.map((f) => f.type),
    [FrameType.RELAY_OFFER, FrameType.RELAY_PLAN, FrameType.CANDIDATES, FrameType.CONNECT_RESULT, FrameType.HELLO],
  );
  const result = frames[3]!;
  t.is(result.type === FrameType.CONNECT_RESULT ? result.status : -1, Status.OK);
  t.is(records, 1, 'the answer came in more than one TLS record (one write each)');
  channel.close();
});
