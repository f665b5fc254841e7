/** Wire-protocol constants shared by server, agent and client. */

export const PROTOCOL_VERSION = 1;

/** Equipment IDs: 1-64 characters, printable and safe in logs, file names and URLs. */
export const EQUIPMENT_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
export const EQUIPMENT_ID_MAX_BYTES = 64;

/** Service names in the device's allow-list. */
export const SERVICE_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,31}$/;
export const SERVICE_NAME_MAX_BYTES = 32;

// --- UDP (registration, acknowledgement, notification) ---
export const UDP_MAGIC = 0x504c; // "PL"
export const UDP_TYPE_REGISTER = 1;
export const UDP_TYPE_REGISTER_ACK = 2;
export const UDP_TYPE_NOTIFY = 3;
/** A tagged "what do you see?" that changes nothing at the server (diagnose, keepalive learning). */
export const UDP_TYPE_PROBE = 4;
/** Server -> the device's registered mapping, on request by a PROBE: "is that mapping still open?" */
export const UDP_TYPE_MAPPING_CHECK = 5;
/**
 * Server -> a source not yet shown to receive: "send that again with this cookie" (return
 * routability, P6). Carries the server time, so a device with a wrong clock learns it too.
 */
export const UDP_TYPE_COOKIE = 6;
/** Device -> server: "I will not wake for that request" (its wake proof failed, P9). */
export const UDP_TYPE_REFUSE = 7;
/**
 * Client -> server, on the registration and the probe port: "what address do you see?", without a
 * key (a client holds none the server knows) and without state at the server. Answered at once
 * with a CLIENT_PROBE_ACK, smaller than the probe, to its source only; per-source limits apply (P6).
 * A client compares the two ports' answers: its own NAT's mapping behaviour (agent/nat/client-mapping.ts).
 */
export const UDP_TYPE_CLIENT_PROBE = 8;
export const UDP_TYPE_CLIENT_PROBE_ACK = 9;
/** The client's random nonce, echoed: an off-path sender cannot forge an answer. */
export const CLIENT_PROBE_NONCE_BYTES = 16;
/** The cookie field of REGISTER and PROBE, and of COOKIE; all zero: none. */
export const COOKIE_BYTES = 16;
/** Cookies are keyed per epoch of this length; one of the current or the previous epoch is valid. */
export const COOKIE_EPOCH_MS = 120_000;
/** PROBE flag: also send a MAPPING_CHECK to the mapping registered for this ID. */
export const PROBE_FLAG_CHECK_MAPPING = 0x01;
/** A probe asking for a mapping check is padded so that the ack and the check together are no larger (P6). */
export const PROBE_WITH_CHECK_MIN_BYTES = 112;
/** Registrations are padded to at least this size so that no ack is larger (P6: no amplification). */
export const REGISTER_MIN_BYTES = 64;
export const UDP_MAX_BYTES = 256;

// --- TLS frames (client <-> server, device <-> server) ---
export const FRAME_HEADER_BYTES = 4;
export const FRAME_MAX_PAYLOAD_BYTES = 4096;

export const REQUEST_ID_BYTES = 16;
/**
 * The client's relay join token: random per request, sent only in RELAY_OFFER over the client's
 * TLS connection, so an observer of the NOTIFY (which carries the request ID) cannot join as the client.
 */
export const RELAY_JOIN_TOKEN_BYTES = 16;
/** Each side's nonce in a plain relay leg's join (frames.ts RELAY_LEG_*). */
export const RELAY_LEG_NONCE_BYTES = 16;
/**
 * The ALPN name of the rendezvous protocol with relay plans (issue 15): offered by clients and
 * devices, selected by a server that knows RELAY_PLAN and RELAY_RELEASE. Either side sends those
 * frames only on a connection where it was agreed; without it (an older peer) nothing changes.
 */
export const RENDEZVOUS_ALPN = 'peerlink/1+relay-plan';

// --- Timing defaults ---
export const REGISTER_INTERVAL_MS = 25_000;
export const REGISTER_ACK_TIMEOUT_MS = 3_000;
/** A registration timestamp may differ from the server's clock by this much. */
export const REGISTER_CLOCK_WINDOW_MS = 60_000;
/** A client's request is fresh for this long either side of the device's estimate of server time. */
export const REQUEST_FRESHNESS_MS = 30_000;
/** A device not heard from for this long is reported stale. */
export const DEVICE_STALE_AFTER_MS = 90_000;
/** A device not heard from for this long is removed from the list. */
export const DEVICE_FORGET_AFTER_MS = 24 * 60 * 60_000;
export const NOTIFY_RETRY_MS = 500;
export const DEVICE_ATTACH_TIMEOUT_MS = 8_000;
export const PEER_CONNECT_TIMEOUT_MS = 10_000;
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** How long a side waits at the relay for the other. */
export const RELAY_PAIR_TIMEOUT_MS = 15_000;

/** The TLS 1.3 suite of the direct channel: Node 20 negotiates external PSKs with it. */
export const TUNNEL_CIPHER = 'TLS_AES_128_GCM_SHA256';
export const TUNNEL_PSK_IDENTITY_PREFIX = 'pl1:';
/**
 * Several paths may complete the end-to-end handshake at once (device dial, reverse dial, hole
 * punch, relay). The device keeps the first and says so with this byte, sent first inside the
 * channel; the client takes the stream that carries it and drops the others. One decider, so the
 * two ends never keep different paths.
 */
export const TUNNEL_CHOSEN_BYTE = 0x01;
/**
 * TCP keepalive on every tunnel connection: an idle session (an ssh prompt) keeps its NAT mappings
 * (home routers drop idle TCP entries after minutes to hours), and a peer that vanished without a
 * FIN or RST is noticed instead of waited on forever.
 */
export const TUNNEL_KEEPALIVE_MS = 30_000;
/** The device starts the relay this long after the verdict while its direct attempts go on. */
export const RELAY_AFTER_MS = 1_500;
/**
 * A client told when the device joins the relay (RELAY_PLAN) starts its own join this much sooner:
 * the plan reaches it a one-way trip after the device's clock started, and its leg should be
 * waiting when the device's arrives. A direct path that wins within this margin costs one join.
 */
export const RELAY_JOIN_LEAD_MS = 200;
/** The latest a client given a relay plan joins (the server's default join deadline): a larger plan is clamped. */
export const RELAY_PLAN_MAX_MS = 20_000;
/** A reverse connection must name its request (the token) within this time. */
export const REVERSE_TOKEN_TIMEOUT_MS = 5_000;
/**
 * P10: connections to the reverse port still before their token, at once. Legitimate ones are one
 * per request in progress (dial.max_concurrent, 16 by default); the rest is a stranger's.
 */
export const REVERSE_MAX_PENDING_CONNECTIONS = 64;
/** P10: the client's accept port: device connections still before their PSK handshake, at once. */
export const PEER_MAX_PENDING_CONNECTIONS = 64;
/** P10: `--listen`: local connections waiting for their tunnel at once (each costs a request to the server). */
export const LOCAL_FORWARD_MAX_PENDING_CONNECTIONS = 16;
