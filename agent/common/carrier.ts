/**
 * A channel (the end-to-end TLS) run over a carrier connection (the relay's TLS to the server).
 *
 * Node's TLS over a non-socket stream destroys that stream when the channel closes, which can
 * drop bytes still queued on the carrier. This view stands between them: destroying the view
 * ends the carrier in order (its queued bytes still go out). A carrier that dies with an error
 * (the relay resets it when a limit cuts the session) destroys the view, and so the channel.
 */
import { Duplex } from 'node:stream';

/** How long an ended carrier may take to flush before it is destroyed. */
export const CARRIER_FLUSH_MS = 10_000;

export function carrierStream(carrier: Duplex): Duplex {
  const view = new Duplex({
    allowHalfOpen: true,
    write(chunk: Buffer, _enc, cb) {
      carrier.write(chunk, (err) => cb(err ?? null));
    },
    final(cb) {
      carrier.end();
      cb();
    },
    read() {
      carrier.resume();
    },
    destroy(err, cb) {
      if (!carrier.destroyed) {
        carrier.end();
        setTimeout(() => carrier.destroy(), CARRIER_FLUSH_MS).unref();
      }
      cb(err);
    },
  });
  carrier.on('data', (d: Buffer) => {
    if (!view.push(d)) carrier.pause();
  });
  carrier.once('end', () => view.push(null));
  carrier.on('error', () => undefined); // reported below, as the view's end
  carrier.once('close', (hadError: boolean) => {
    if (hadError) view.destroy(new Error('the relay connection was cut'));
  });
  return view;
}
