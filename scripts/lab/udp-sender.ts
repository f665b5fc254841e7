/**
 * Send given datagrams from inside a lab namespace: `ip netns exec NS node udp-sender.js HOST PORT
 * GAP_MS` with one datagram per stdin line, in hex. Each goes from one socket (one source port), GAP_MS
 * apart; the program prints how many it sent and exits. Used to replay or spoof packets built
 * with the real codecs in the test process (a namespace's sockets must be made inside it).
 */
import { createSocket } from 'node:dgram';
import { text } from 'node:stream/consumers';

/** Bounded: a spec never needs more, and a mistake cannot turn this into a flood. */
export const UDP_SENDER_MAX_DATAGRAMS = 10_000;
export const UDP_SENDER_MAX_GAP_MS = 10_000;

async function main(): Promise<void> {
  const [host, portText, gapText] = process.argv.slice(2);
  const port = Number(portText);
  const gapMs = Number(gapText ?? '0');
  if (!host || !Number.isInteger(port) || port < 1 || port > 65535 || !(gapMs >= 0 && gapMs <= UDP_SENDER_MAX_GAP_MS)) {
    throw new Error(
      `usage: udp-sender HOST PORT [GAP_MS <= ${UDP_SENDER_MAX_GAP_MS}] < datagrams (hex, one a line); got ${process.argv.slice(2).join(' ')}`,
    );
  }
  const datagrams = (await text(process.stdin))
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => Buffer.from(l, 'hex'));
  if (datagrams.length > UDP_SENDER_MAX_DATAGRAMS)
    throw new Error(`udp-sender: at most ${UDP_SENDER_MAX_DATAGRAMS} datagrams, got ${datagrams.length}`);
  const socket = createSocket('udp4');
  // Answers, if any come, are not this program's business: the spec counts them where they arrive.
  socket.on('message', () => undefined);
  try {
    for (const d of datagrams) {
      await new Promise<void>((resolve, reject) => socket.send(d, port, host, (err) => (err ? reject(err) : resolve())));
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
  } finally {
    socket.close();
  }
  process.stdout.write(`${JSON.stringify({ sent: datagrams.length })}\n`);
}

main().catch((err: Error) => {
  process.stderr.write(`udp-sender: ${err.message}\n`);
  process.exit(1);
});
