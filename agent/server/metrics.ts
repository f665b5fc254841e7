/**
 * Prometheus text metrics (prom-client) and a health endpoint, on their own HTTP listener
 * (off by default; meant for a loopback or management address, never the public one).
 *   GET /metrics  the metrics below, plus the process's default metrics
 *   GET /healthz  200 {"status":"ok"} | 503 {"status":"draining"|"registry-unreachable"} for load balancers
 * Counts are kept by the components themselves (cheap `Counters`) and read at scrape time, so the
 * hot paths do not change with metrics on or off. prom-client is imported only when enabled.
 */
import type * as PromClient from 'prom-client';
import { listenOn } from '../common/listen.js';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { Counters } from '../common/counters.js';
import { Status, type StatusValue } from '../protocol/status.js';
import type { BrokerCounter } from './broker-counters.js';
import type { RateLimit } from './rate-limiter.js';
import type { RegistrationCounter } from './registration-endpoint.js';
import type { RELAY_COUNTERS } from './relay.js';

export interface MetricsSource {
  readonly registration: Counters<RegistrationCounter>;
  readonly broker: Counters<BrokerCounter>;
  readonly relay: { readonly counters: Counters<(typeof RELAY_COUNTERS)[number]>; readonly active: number };
  /** Devices in this node's own list (those registered at this node). */
  readonly localDevices: () => number;
  readonly backend: 'memory' | 'redis';
  /** Redis reachable (always true with the in-memory backend). */
  readonly registryUp: () => boolean;
  readonly draining: () => boolean;
  readonly limits: Readonly<Record<string, RateLimit>>;
  readonly nodeId: string;
  /** Relayed sessions this node bridged to the node holding the client. */
  readonly relayBridged: () => number;
  /** Records read from Redis that did not decode and were dropped, by kind (node-messages.ts). */
  readonly malformedFromRedis: () => Readonly<Record<'message' | 'pending' | 'offer', number>>;
  /** Open connections on the TLS listener, by kind (handshake, unidentified, client, device, relay). */
  readonly openConnections: () => Readonly<Record<string, number>>;
  /** Equipment IDs on the operator's deny list as this node enforces it (issue 19). */
  readonly deniedDevices?: () => number;
}

export interface MetricsListener {
  start(): Promise<void>;
  stop(): Promise<void>;
  address(): { address: string; port: number };
  observe(what: 'connect' | 'notifyRoundTrip', ms: number, status: StatusValue): void;
}

/** How long a metrics or health request may take to arrive. */
export const METRICS_REQUEST_TIMEOUT_MS = 10_000;
/** How long an idle keep-alive connection to the metrics listener stays open. */
export const METRICS_KEEP_ALIVE_MS = 5_000;

const STATUS_NAME: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(Status).map(([k, v]) => [v, k.toLowerCase()]));

/** Registration counters as the issue names the outcomes (plus the ones the protocol adds). */
const REGISTRATION_OUTCOMES: readonly [RegistrationCounter, string][] = [
  ['accepted', 'accepted'],
  ['badTag', 'bad_credential'],
  ['malformed', 'malformed'],
  ['rateLimited', 'rate_limited'],
  ['replayed', 'replayed'],
  ['clockSkew', 'clock_skew'],
  ['challenged', 'cookie_challenged'],
  ['unexpectedType', 'unexpected_type'],
  ['overloaded', 'overloaded'],
  ['denied', 'denied'],
];

const REQUEST_OUTCOMES: readonly [BrokerCounter, string][] = [
  ['connected', 'connected'],
  ['unknownDevice', 'unknown_device'],
  ['staleDevice', 'stale_device'],
  ['noAnswer', 'no_answer'],
  ['refusedByDevice', 'refused_by_device'],
  ['refusedWake', 'wake_refused_by_device'],
  ['rateLimitedAuthFailures', 'rate_limited_auth_failures'],
  ['busy', 'busy'],
  ['rateLimitedSource', 'rate_limited_source'],
  ['rateLimitedTarget', 'rate_limited_device'],
  ['registryUnavailable', 'registry_unavailable'],
  ['nodeUnavailable', 'node_unavailable'],
  ['shuttingDown', 'shutting_down'],
  ['denied', 'device_denied'],
];

export function createMetricsListener(o: { host: string; port: number; source: MetricsSource; logger: Logger }): MetricsListener {
  const { source } = o;
  let server: Server | null = null;
  let observe: MetricsListener['observe'] = () => undefined;

  /** The registry, with one group of metrics per part of the server. */
  async function build(): Promise<{ text: () => Promise<string>; contentType: string }> {
    const prom = await import('prom-client');
    const register = new prom.Registry();
    register.setDefaultLabels({ node: source.nodeId });
    prom.collectDefaultMetrics({ register, prefix: 'peerlink_' });
    const m = metricMakers(prom, register);
    registrationMetrics(m, source);
    observe = requestMetrics(m, prom, register, source);
    relayMetrics(m, source);
    limitMetrics(m, source);
    return { text: () => register.metrics(), contentType: register.contentType };
  }

  return {
    observe: (what, ms, status) => observe(what, ms, status),
    async start() {
      const metrics = await build();
      // A scrape is one short request: a connection that does not send one in time is closed
      // (Node's defaults let it sit 60-300 s), and an idle keep-alive one soon after.
      const s = createServer(
        { headersTimeout: METRICS_REQUEST_TIMEOUT_MS, requestTimeout: METRICS_REQUEST_TIMEOUT_MS, keepAliveTimeout: METRICS_KEEP_ALIVE_MS },
        (req, res) => {
          const path = (req.url ?? '/').split('?')[0];
          if (req.method !== 'GET') {
            res.writeHead(405).end();
          } else if (path === '/metrics') {
            metrics.text().then(
              (t) => res.writeHead(200, { 'content-type': metrics.contentType }).end(t),
              (err: Error) => res.writeHead(500).end(err.message),
            );
          } else if (path === '/healthz') {
            const status = source.draining() ? 'draining' : source.registryUp() ? 'ok' : 'registry-unreachable';
            res
              .writeHead(status === 'ok' ? 200 : 503, { 'content-type': 'application/json' })
              .end(`${JSON.stringify({ status, node: source.nodeId, backend: source.backend })}\n`);
          } else res.writeHead(404).end();
        },
      );
      await listenOn(s, o.port, o.host);
      server = s;
    },
    async stop() {
      const s = server;
      server = null;
      if (s) {
        s.closeAllConnections();
        await new Promise<void>((r) => s.close(() => r()));
      }
    },
    address() {
      const a = server?.address();
      if (!a || typeof a === 'string') throw new Error('not started');
      return { address: a.address, port: a.port };
    },
  };
}

type Prom = typeof PromClient;

/** Counters and gauges read from the components when scraped. */
interface MetricMakers {
  fromCounters<K extends string>(name: string, help: string, label: string, counters: Counters<K>, map: readonly [K, string][]): void;
  counter(name: string, help: string, read: () => number): void;
  gauge(name: string, help: string, read: () => number): void;
  /** A gauge with one label, set from the entries `read` returns. */
  labelledGauge(name: string, help: string, label: string, read: () => Iterable<[string, number]>): void;
  /** A counter with one label, from the totals `read` returns. */
  labelledCounter(name: string, help: string, label: string, read: () => Iterable<[string, number]>): void;
}

function metricMakers(prom: Prom, register: InstanceType<Prom['Registry']>): MetricMakers {
  const registers = [register];
  return {
    fromCounters(name, help, label, counters, map) {
      new prom.Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset();
          for (const [k, v] of map) this.inc({ [label]: v }, counters.get(k));
        },
      });
    },
    counter(name, help, read) {
      new prom.Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    },
    gauge(name, help, read) {
      new prom.Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    },
    labelledCounter(name, help, label, read) {
      new prom.Counter({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          this.reset();
          for (const [k, v] of read()) this.inc({ [label]: k }, v);
        },
      });
    },
    labelledGauge(name, help, label, read) {
      new prom.Gauge({
        name,
        help,
        labelNames: [label],
        registers,
        collect() {
          for (const [k, v] of read()) this.set({ [label]: k }, v);
        },
      });
    },
  };
}

function registrationMetrics(m: MetricMakers, source: MetricsSource): void {
  m.fromCounters('peerlink_registrations_total', 'UDP registrations by outcome', 'outcome', source.registration, REGISTRATION_OUTCOMES);
  m.labelledCounter(
    'peerlink_shared_registry_writes_total',
    'Registrations and the shared registry (write on change): written, skipped (unchanged, written recently), held (another node keeps the device fresh)',
    'outcome',
    () => [
      ['written', source.registration.get('sharedWrites')],
      ['skipped', source.registration.get('sharedWriteSkipped')],
      ['held', source.registration.get('sharedHeld')],
    ],
  );
  m.counter(
    'peerlink_registrations_local_only_total',
    'Registrations accepted while the shared registry (Redis) was unreachable: kept at this node only',
    () => source.registration.get('registryUnavailable'),
  );
  m.gauge('peerlink_registered_devices', "Devices in this node's own list (registered at this node and not yet forgotten)", () =>
    source.localDevices(),
  );
  m.counter('peerlink_notifications_sent_total', 'UDP notifications sent (each retry counts)', () =>
    source.registration.get('notificationsSent'),
  );
  m.labelledGauge('peerlink_registry_up', 'The registry backend answers (1) or not (0)', 'backend', () => [
    [source.backend, source.registryUp() ? 1 : 0],
  ]);
  m.gauge(
    'peerlink_denied_devices',
    "Equipment IDs on the operator's deny list, as this node enforces it",
    () => source.deniedDevices?.() ?? 0,
  );
  m.labelledCounter(
    'peerlink_node_records_malformed_total',
    'Messages between nodes, pending requests and relay offers read from Redis that did not decode (dropped)',
    'kind',
    () => Object.entries(source.malformedFromRedis()),
  );
}

/** Connection requests and the TLS port; returns where timings are observed. */
function requestMetrics(
  m: MetricMakers,
  prom: Prom,
  register: InstanceType<Prom['Registry']>,
  source: MetricsSource,
): MetricsListener['observe'] {
  m.fromCounters('peerlink_connection_requests_total', 'Connection requests by outcome', 'outcome', source.broker, REQUEST_OUTCOMES);
  m.fromCounters('peerlink_cross_node_total', 'Requests routed between server nodes', 'event', source.broker, [
    ['routedToNode', 'routed_to_owner'],
    ['notifiedForNode', 'notifications_sent_for_other_node'],
    ['attachedForNode', 'device_attached_for_other_node'],
  ]);
  m.fromCounters(
    'peerlink_device_attach_rejected_total',
    'Device TLS attaches refused (unknown request or bad proof)',
    'reason',
    source.broker,
    [['attachRejected', 'rejected']],
  );
  m.fromCounters(
    'peerlink_tls_connections_dropped_total',
    'TLS connections dropped before they said what they are',
    'reason',
    source.broker,
    [
      ['handshakeFailed', 'handshake_failed'],
      ['handshakeTimeout', 'handshake_timeout'],
      ['badFirstFrame', 'bad_first_frame'],
      ['unidentifiedOverCap', 'unidentified_over_cap'],
    ],
  );
  m.fromCounters(
    'peerlink_relay_legs_total',
    'Plain relay legs (no TLS around the end-to-end channel): joined, or refused',
    'outcome',
    source.broker,
    [
      ['relayLegs', 'joined'],
      ['relayLegsRefused', 'refused'],
    ],
  );
  m.counter(
    'peerlink_relay_client_joins_total',
    'Relay joins clients started (plain or TLS), whatever came of them: none where a direct path won before the device joined',
    () => source.broker.get('relayClientJoins'),
  );
  m.fromCounters(
    'peerlink_kept_device_connections_total',
    'Device attach connections kept after a verdict (issue 15), refused at requests.max_kept_devices, closed idle, and wakes sent over one',
    'outcome',
    source.broker,
    [
      ['kept', 'kept'],
      ['keptOverCap', 'over_cap'],
      ['keptIdleClosed', 'idle_closed'],
      ['keptWakes', 'woken'],
    ],
  );
  m.fromCounters('peerlink_tls_handshakes_total', 'TLS handshakes on the TLS port, full or resumed (ticket)', 'kind', source.broker, [
    ['tlsFull', 'full'],
    ['tlsResumed', 'resumed'],
  ]);
  m.fromCounters(
    'peerlink_client_connections_total',
    "Clients' TLS connections (kept between requests): opened, requests on one after its first, closed idle",
    'event',
    source.broker,
    [
      ['clientConnections', 'opened'],
      ['keptClientRequests', 'kept_request'],
      ['keptClientIdleClosed', 'closed_idle'],
    ],
  );
  m.labelledGauge('peerlink_tls_connections', 'Open connections on the TLS port, by what they are so far', 'kind', () =>
    Object.entries(source.openConnections()),
  );
  const connect = new prom.Histogram({
    name: 'peerlink_connect_duration_seconds',
    help: "Server-side time to connect: from the client's request to the device's verdict relayed to the client",
    labelNames: ['status'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [register],
  });
  const roundTrip = new prom.Histogram({
    name: 'peerlink_notification_round_trip_seconds',
    help: "From the first UDP notification to the device's TLS attach (at any node)",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [register],
  });
  // One labelled child per status, looked up once: observe() with a label object hashes it every time.
  const byStatus = new Map<StatusValue, { observe(v: number): void }>();
  return (what, ms, status) => {
    if (what !== 'connect') return roundTrip.observe(ms / 1000);
    let h = byStatus.get(status);
    if (!h) byStatus.set(status, (h = connect.labels({ status: STATUS_NAME[status] ?? String(status) })));
    h.observe(ms / 1000);
  };
}

function relayMetrics(m: MetricMakers, source: MetricsSource): void {
  m.gauge('peerlink_relay_sessions', 'Relay sessions now', () => source.relay.active);
  m.fromCounters('peerlink_relay_sessions_total', 'Relay sessions by outcome', 'outcome', source.relay.counters, [
    ['offered', 'offered'],
    ['paired', 'paired'],
    ['expired', 'expired'],
    ['refusedFull', 'refused_full'],
    ['refusedUnknown', 'refused_unknown'],
    ['refusedPerDevice', 'refused_per_device'],
    ['refusedPerSource', 'refused_per_source'],
    ['refusedToken', 'refused_token'],
    ['withdrawn', 'withdrawn'],
    ['released', 'released'],
    ['cutForDuration', 'cut_for_duration'],
    ['cutIdle', 'cut_idle'],
  ]);
  m.counter('peerlink_relay_bridged_total', 'Relayed sessions bridged from this node (the device) to the node holding the client', () =>
    source.relayBridged(),
  );
  m.counter('peerlink_relay_bytes_total', 'Bytes copied by the relay (both directions)', () => source.relay.counters.get('bytes'));
}

function limitMetrics(m: MetricMakers, source: MetricsSource): void {
  m.labelledGauge('peerlink_rate_limit_per_second', 'Configured rate limits (sustained events per second; 0 = off)', 'limit', () =>
    Object.entries(source.limits).map(([k, v]) => [k, v.perSecond]),
  );
  m.labelledGauge('peerlink_rate_limit_burst', 'Configured rate limit bursts', 'limit', () =>
    Object.entries(source.limits).map(([k, v]) => [k, v.burst]),
  );
  m.fromCounters('peerlink_rate_limited_total', 'Events refused by a rate limit', 'limit', source.broker, [
    ['rateLimitedSource', 'requests_per_source'],
    ['rateLimitedTarget', 'requests_per_device'],
    ['rateLimitedAuthFailures', 'auth_failures_per_source'],
  ]);
  m.counter('peerlink_registrations_rate_limited_total', 'Registrations dropped by the per-source limit', () =>
    source.registration.get('rateLimited'),
  );
}
