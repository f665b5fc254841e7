/**
 * P6 in the NAT lab: the server cannot be made to send a third party (a victim on the WAN)
 * anything with the device's packets. An attacker host on the WAN spoofs the victim's address
 * (an nftables snat: its packets to the server leave with the victim's source; the answers go to
 * the victim's own host, which holds the address); the device runs behind router B, the owner's
 * client behind router A.
 *
 * Measured where the packets pass, by nftables counters: at the victim's edge (everything the
 * server sends it, by size), at the server's interface (the spoofed packets did arrive, with the
 * victim's source), at the attacker (what it sent) and at router B (the device's notifications).
 * Before P6 a replayed registration or probe drew an ack to its source, and a registration the
 * owner sent from the victim's address made the victim the device's mapping, so the device's
 * notifications went there: the victim's counters would not stay at 0.
 */
import { createHash, randomBytes } from 'node:crypto';
import { loadIdentity } from '../../agent/device/identity.js';
import type { DeviceIdentity } from '../../agent/protocol/identity-file.js';
import { PROBE_FLAG_CHECK_MAPPING } from '../../agent/protocol/constants.js';
import { encodeCookie, encodeNotify, encodeProbe, encodeRegister, REGISTER_NONCE_BYTES } from '../../agent/protocol/udp-packets.js';
import { createCookieJar } from '../../agent/server/cookie-jar.js';
import { runClient, SERVER_UDP_PORT } from '../../scripts/lab/cell.js';
import { installCounters, readCounter } from '../../scripts/lab/nft-counter.js';
import { startRunningLab, type RunningLab } from '../../scripts/lab/running-lab.js';
import { sendDatagrams } from '../../scripts/lab/send-datagrams.js';
import { spoofSource } from '../../scripts/lab/spoof.js';
import { ADDR } from '../../scripts/lab/topology.js';
import { addWanHost } from '../../scripts/lab/wan-host.js';
import { strangerWake } from '../helpers/wake.js';
import { labTest } from '../helpers/lab-test.js';
import { waitUntil } from '../helpers/harness.js';

/** Ordinary unicast, as every lab WAN address (the lab cannot reach beyond itself). */
const VICTIM_ADDRESS = '62.210.0.9';
const ATTACKER_ADDRESS = '62.210.0.66';
const UDP_HEADER_BYTES = 8;
const NONCE_BYTES_PROBE = REGISTER_NONCE_BYTES;
const CAPTURED_REGISTRATIONS = 20;
const CAPTURED_PROBES = 20;
const OWNER_REGISTRATIONS = 40;
const SEND_GAP_MS = 20;
const OWNER_REGISTER_GAP_MS = 100;
/** The owner's connect starts while the spoofed registrations are under way. */
const CONNECT_AFTER_MS = 500;
const CONNECT_TIMEOUT_MS = 25_000;
const CLIENT_PORT = 5000;
/** Time for any answer (and the server's notification retries, every 500 ms) to arrive. */
const SETTLE_MS = 2000;
/** A captured registration is older than the last one the server accepted (the device's, logged then). */
const CAPTURE_AGE_MS = 500;

interface ReflectionLab {
  readonly run: RunningLab;
  readonly victim: string;
  readonly attacker: string;
  readonly identity: DeviceIdentity;
  /** The device's mapping as the server registered it, and the cookie the device holds for it. */
  readonly mapping: { readonly address: string; readonly port: number };
  readonly deviceCookie: Buffer;
}

/** Sizes on the wire (UDP length) of the server's cookie request and notification (the key does not change them). */
const SIZING_KEY = Buffer.alloc(32);
const COOKIE_UDP_BYTES =
  UDP_HEADER_BYTES +
  encodeCookie({ nonce: Buffer.alloc(REGISTER_NONCE_BYTES), serverTimeMs: 0, cookie: Buffer.alloc(16) }, SIZING_KEY).length;
const NOTIFY_UDP_BYTES =
  UDP_HEADER_BYTES + encodeNotify({ requestId: Buffer.alloc(16), serverTimeMs: 0, wake: strangerWake(0) }, SIZING_KEY).length;

async function reflectionLab(): Promise<ReflectionLab> {
  const run = await startRunningLab({ client: { nat: 'port-restricted' }, device: { nat: 'port-restricted' } });
  try {
    const { lab, setup } = run;
    const victim = (await addWanHost(lab, { role: 'victim', addresses: [VICTIM_ADDRESS] })).ns;
    const attacker = (await addWanHost(lab, { role: 'attacker', addresses: [ATTACKER_ADDRESS] })).ns;
    await spoofSource(attacker, { as: VICTIM_ADDRESS, to: { address: ADDR.server, port: SERVER_UDP_PORT } });
    const fromServer = `ip saddr ${ADDR.server}`;
    await installCounters(victim, [
      { name: 'from_server', hook: 'prerouting', match: fromServer },
      { name: 'cookie_sized', hook: 'prerouting', match: `${fromServer} udp sport ${SERVER_UDP_PORT} udp length ${COOKIE_UDP_BYTES}` },
      { name: 'notify_sized', hook: 'prerouting', match: `${fromServer} udp length >= ${NOTIFY_UDP_BYTES}` },
    ]);
    await installCounters(attacker, [{ name: 'sent', hook: 'output', match: `ip daddr ${ADDR.server} udp dport ${SERVER_UDP_PORT}` }]);
    await installCounters(lab.server, [
      { name: 'spoofed_in', hook: 'prerouting', match: `ip saddr ${VICTIM_ADDRESS} udp dport ${SERVER_UDP_PORT}` },
    ]);
    await installCounters(lab.device.router!, [
      {
        name: 'device_notifies',
        hook: 'forward',
        match: `iifname "wan0" ${fromServer} udp sport ${SERVER_UDP_PORT} udp length >= ${NOTIFY_UDP_BYTES}`,
      },
    ]);
    const identity = await loadIdentity(setup.identityFile);
    const [address, port] = String(run.registered.mapping).split(':');
    const mapping = { address: address!, port: Number(port) };
    if (mapping.address !== lab.device.publicAddress)
      throw new Error(`the device registered as ${String(run.registered.mapping)}, not through router B`);
    const deviceCookie = createCookieJar(setup.masterKey).issue(identity.equipmentId, mapping, Date.now());
    return { run, victim, attacker, identity, mapping, deviceCookie };
  } catch (err) {
    await run.stop();
    throw err;
  }
}

const settle = (): Promise<void> => new Promise((r) => setTimeout(r, SETTLE_MS));

labTest(
  "P6 across real NATs: the device's registrations and probes, captured and replayed with a victim's source address, draw nothing at the victim",
  async (t) => {
    const w = await reflectionLab();
    try {
      const { identity, deviceCookie } = w;
      const id = identity.equipmentId;
      const registeredAtMs = Number(w.run.registered.time);
      // What a capture of the device's traffic holds: its registrations (older than the last one the
      // server accepted, each with the cookie for its mapping) and its probes, which the device sent
      // to the server (from its own namespace, through router B) before the attacker replays them.
      const registrations = Array.from({ length: CAPTURED_REGISTRATIONS }, (_, i) =>
        encodeRegister(
          {
            equipmentId: id,
            timestampMs: registeredAtMs - CAPTURE_AGE_MS - i * 1000,
            nonce: randomBytes(REGISTER_NONCE_BYTES),
            cookie: deviceCookie,
          },
          identity.registrationKey,
        ),
      );
      const probes = Array.from({ length: CAPTURED_PROBES }, (_, i) =>
        encodeProbe(
          {
            flags: i % 2 === 0 ? 0 : PROBE_FLAG_CHECK_MAPPING,
            equipmentId: id,
            timestampMs: Date.now(),
            nonce: randomBytes(NONCE_BYTES_PROBE),
            cookie: deviceCookie,
          },
          identity.registrationKey,
        ),
      );
      await sendDatagrams({
        ns: w.run.lab.device.host,
        to: { address: ADDR.server, port: SERVER_UDP_PORT },
        datagrams: probes,
        gapMs: SEND_GAP_MS,
      });
      const replayed = [...registrations, ...probes];
      await sendDatagrams({ ns: w.attacker, to: { address: ADDR.server, port: SERVER_UDP_PORT }, datagrams: replayed, gapMs: SEND_GAP_MS });
      // The control, and a fence: one fresh probe from the same spoofed source draws its COOKIE at the
      // victim. The server answers its socket's datagrams in order, so once that cookie is counted
      // any answer to the replays (sent before it) is counted too: no quiet period to guess.
      const fresh = encodeProbe(
        { flags: 0, equipmentId: id, timestampMs: Date.now(), nonce: randomBytes(NONCE_BYTES_PROBE) },
        identity.registrationKey,
      );
      await sendDatagrams({ ns: w.attacker, to: { address: ADDR.server, port: SERVER_UDP_PORT }, datagrams: [fresh] });
      await waitUntil(
        async () => (await readCounter(w.victim, 'cookie_sized')).packets >= 1,
        "the control probe's cookie request at the victim",
        20_000,
        100,
      );

      const sent = await readCounter(w.attacker, 'sent');
      const arrived = await readCounter(w.run.lab.server, 'spoofed_in');
      const atVictim = await readCounter(w.victim, 'from_server');
      t.log(
        `attacker sent ${sent.packets} packets (${sent.bytes} bytes); ${arrived.packets} arrived at the server from ${VICTIM_ADDRESS}; the victim received ${atVictim.packets} packets (${atVictim.bytes} bytes) from the server`,
      );
      t.is(sent.packets, replayed.length + 1, 'the attacker sent every replay and the control');
      t.is(arrived.packets, replayed.length + 1, "every replay reached the server with the victim's source address");
      t.is(atVictim.packets, 1, "the server sent the victim nothing but the control's cookie request");
      t.is(
        (await readCounter(w.victim, 'cookie_sized')).packets,
        1,
        'a fresh probe from the spoofed source drew one cookie request at the victim',
      );
    } finally {
      await w.run.stop();
    }
  },
);

labTest(
  "P6 across real NATs: a device owner registering with a victim's address gets it cookie requests only, no bigger than what was sent, and never a notification",
  async (t) => {
    const w = await reflectionLab();
    try {
      const { identity } = w;
      const start = Date.now();
      // The owner holds K_reg and makes fresh, well-tagged registrations, each newer than the last.
      const registrations = Array.from({ length: OWNER_REGISTRATIONS }, (_, i) =>
        encodeRegister(
          { equipmentId: identity.equipmentId, timestampMs: start + i * OWNER_REGISTER_GAP_MS, nonce: randomBytes(REGISTER_NONCE_BYTES) },
          identity.registrationKey,
        ),
      );
      const spoofing = sendDatagrams({
        ns: w.attacker,
        to: { address: ADDR.server, port: SERVER_UDP_PORT },
        datagrams: registrations,
        gapMs: OWNER_REGISTER_GAP_MS,
      });
      // Meanwhile a connection request for the device: the real CLI from behind router A.
      await new Promise((r) => setTimeout(r, CONNECT_AFTER_MS));
      const payload = randomBytes(4096);
      const args = [
        ...w.run.clientArgs,
        '--accept',
        `0.0.0.0:${CLIENT_PORT}`,
        '--advertise-port',
        String(CLIENT_PORT),
        '--peer-timeout-ms',
        '4000',
      ];
      const [, client] = await Promise.all([spoofing, runClient(w.run.lab.client.host, args, payload, CONNECT_TIMEOUT_MS)]);
      await settle();

      const sent = await readCounter(w.attacker, 'sent');
      const arrived = await readCounter(w.run.lab.server, 'spoofed_in');
      const atVictim = await readCounter(w.victim, 'from_server');
      const cookies = await readCounter(w.victim, 'cookie_sized');
      const notifies = await readCounter(w.victim, 'notify_sized');
      const deviceNotifies = await readCounter(w.run.lab.device.router!, 'device_notifies');
      t.log(
        `owner sent ${sent.packets} registrations from ${VICTIM_ADDRESS} (${sent.bytes} bytes, ${arrived.packets} arrived); the victim received ${atVictim.packets} packets (${atVictim.bytes} bytes), ${cookies.packets} cookie-sized (${COOKIE_UDP_BYTES} bytes UDP), ${notifies.packets} notification-sized (>= ${NOTIFY_UDP_BYTES})`,
      );
      t.log(`the client: exit ${client.code}; router B passed ${deviceNotifies.packets} notification(s) to the device`);
      t.is(arrived.packets, OWNER_REGISTRATIONS, "every registration reached the server with the victim's source address");
      // The victim hears only cookie requests: at most one per registration, never more bytes than were sent.
      t.true(atVictim.packets > 0, 'the registrations drew cookie requests (the spoofed path works both ways)');
      t.is(cookies.packets, atVictim.packets, 'everything the victim received is a cookie request');
      t.true(atVictim.packets <= OWNER_REGISTRATIONS, 'at most one answer per registration');
      t.true(atVictim.bytes <= sent.bytes, `the victim received ${atVictim.bytes} bytes, the owner sent ${sent.bytes}`);
      t.is(notifies.packets, 0, 'no notification reached the victim');
      // The notifications went where the device is (which also shows the counter's size match sees one).
      t.true(deviceNotifies.packets >= 1, 'router B passed the notification to the device');
      t.is(client.code, 0, client.stderr);
      t.is(client.stdoutSha, createHash('sha256').update(payload).digest('hex'), "the owner connected through the device's real mapping");
    } finally {
      await w.run.stop();
    }
  },
);
