/**
 * Configuration takes IPv6 literals ("[2001:db8::1]:7443", "::" as a bind host) and names of
 * either family; a bad host is a clear error naming the file (or flag) and the key.
 */
import test from 'ava';
import { parse } from 'smol-toml';
import { ConfigError, ErrorCodes } from '../../agent/common/errors.js';
import { isHostName, parseHost, parseHostPort } from '../../agent/common/endpoint-parse.js';
import { checkAgentSettings } from '../../agent/device/settings.js';
import { checkServerSettings } from '../../agent/server/settings.js';

const AGENT_FILE = '/etc/peerlink/agent.toml';
const SERVER_FILE = '/etc/peerlink/server.toml';

test('parseHostPort: IPv4, bracketed IPv6 (with a zone), names; the default port', (t) => {
  t.deepEqual(parseHostPort('127.0.0.1:7443', 'x'), { host: '127.0.0.1', port: 7443 });
  t.deepEqual(parseHostPort('[::1]:7443', 'x'), { host: '::1', port: 7443 });
  t.deepEqual(parseHostPort('[2001:db8::1]:80', 'x'), { host: '2001:db8::1', port: 80 });
  t.deepEqual(parseHostPort('[fe80::1%eth0]:80', 'x'), { host: 'fe80::1%eth0', port: 80 });
  t.deepEqual(parseHostPort('[64:ff9b::192.0.2.1]:80', 'x'), { host: '64:ff9b::192.0.2.1', port: 80 });
  t.deepEqual(parseHostPort('rv.example.net:7443', 'x'), { host: 'rv.example.net', port: 7443 });
  t.deepEqual(parseHostPort('localhost:0', 'x'), { host: 'localhost', port: 0 });
  t.deepEqual(parseHostPort('[::]', 'x', 7443), { host: '::', port: 7443 });
  t.deepEqual(parseHostPort('2001:db8::5', 'x', 7443), { host: '2001:db8::5', port: 7443 }, 'a bare IPv6 address takes the default port');
  t.deepEqual(parseHostPort('rv.example.net', 'x', 7443), { host: 'rv.example.net', port: 7443 });
});

test('parseHostPort: bad input is an OPTIONS_INVALID ConfigError naming where, what and why', (t) => {
  const cases: Array<[string, RegExp]> = [
    ['::1:7443', /\[::1:7443\]:PORT/],
    ['2001:db8::1:80', /brackets/],
    ['[2001:db8::1]', /no port/],
    ['[2001:db8::1]:', /no port after the colon/],
    ['[2001:db8::zz]:80', /not an IPv6 address/],
    ['[10.0.0.1]:80', /not an IPv6 address/],
    ['[::1]80', /followed by nothing or by :port/],
    ['1.2.3.256:80', /not an IPv4 address/],
    ['bad_host!:80', /not an IP address or a host name/],
    [':80', /no host/],
    ['host:65536', /0-65535/],
    ['host:http', /.*/],
    ['1:2:3', /not an IPv6 address/],
  ];
  for (const [text, why] of cases) {
    const err = t.throws(() => parseHostPort(text, '--server'), { instanceOf: ConfigError }, text);
    t.is(err?.code, ErrorCodes.OPTIONS_INVALID, text);
    t.regex(err?.message ?? '', /--server: expected host:port/, text);
    t.true(err?.message.includes(JSON.stringify(text)), text);
    t.regex(err?.message ?? '', why, text);
  }
});

test('parseHost and isHostName', (t) => {
  t.is(parseHost('[::]', 'udp.host'), '::');
  t.is(parseHost('::', 'udp.host'), '::');
  t.is(parseHost('0.0.0.0', 'udp.host'), '0.0.0.0');
  t.is(parseHost('rv.example.net.', 'h'), 'rv.example.net.');
  t.true(isHostName('a-b.example'));
  for (const bad of ['-a.example', 'a-.example', 'a..b', '', '10.1', '1.2.3.4.5', 'x'.repeat(64), `${'a.'.repeat(127)}a`])
    t.false(isHostName(bad), bad);
  t.throws(() => parseHost('[::1', 'udp.host'), {
    instanceOf: ConfigError,
    message: /udp\.host: expected an IPv4 or IPv6 address or a host name/,
  });
});

const agent = (server: string, services = 'http = "127.0.0.1:80"'): Record<string, unknown> =>
  parse(`identity_file = "identity.toml"\n[server]\n${server}\n[services]\n${services}\n`) as Record<string, unknown>;

test('agent settings: server.host as an IPv6 literal (bracketed or not) or a name; services on IPv6', (t) => {
  t.is(checkAgentSettings(agent('host = "2001:db8::10"'), AGENT_FILE).server.host, '2001:db8::10');
  const s = checkAgentSettings(agent('host = "[2001:db8::10]"', 'ssh = "[::1]:22"\nweb = "[fd00::5]:8080"'), AGENT_FILE);
  t.is(s.server.host, '2001:db8::10');
  t.is(s.server.serverName, '2001:db8::10');
  t.deepEqual(s.services.get('ssh'), { host: '::1', port: 22 });
  t.deepEqual(s.services.get('web'), { host: 'fd00::5', port: 8080 });
  t.is(checkAgentSettings(agent('host = "rv.example.net"'), AGENT_FILE).server.host, 'rv.example.net');
});

test('agent settings: a bad server.host or an unbracketed IPv6 service names the file and the key', (t) => {
  for (const [doc, key] of [
    [agent('host = "2001:db8::zz"'), 'server.host'],
    [agent('host = "[10.0.0.1]"'), 'server.host'],
    [agent('host = "rv_example"'), 'server.host'],
    [agent('host = "rv.example.net"', 'ssh = "::1:22"'), 'services.ssh'],
  ] as const) {
    const err = t.throws(() => checkAgentSettings(doc, AGENT_FILE), { instanceOf: ConfigError });
    t.true(
      err?.problems.some((p) => p.startsWith(`${AGENT_FILE}: ${key}: expected`)),
      `${key}: ${err?.problems.join(' | ')}`,
    );
  }
});

const server = (extra: string): Record<string, unknown> =>
  parse(`registration_master_key_file = "m.key"\n${extra}\n[tls]\ncert_file = "c"\nkey_file = "k"\n`) as Record<string, unknown>;

test('server settings: udp.host, tls.host and metrics.host take IPv6 literals (the dual-stack "::") and names', (t) => {
  const s = checkServerSettings(
    parse(
      `registration_master_key_file = "m.key"\n[udp]\nhost = "::"\n[tls]\nhost = "[::]"\ncert_file = "c"\nkey_file = "k"\n[metrics]\nhost = "::1"\n`,
    ) as Record<string, unknown>,
    SERVER_FILE,
  );
  t.is(s.udp.host, '::');
  t.is(s.tls.host, '::');
  t.is(s.metrics.host, '::1');
  t.is(checkServerSettings(server('[udp]\nhost = "rv.example.net"'), SERVER_FILE).udp.host, 'rv.example.net');
});

test('server settings: a bad bind host names the file and the key', (t) => {
  const err = t.throws(
    () =>
      checkServerSettings(
        parse(
          `registration_master_key_file = "m.key"\n[udp]\nhost = "::g"\n[tls]\nhost = "1.2.3.256"\ncert_file = "c"\nkey_file = "k"\n[metrics]\nhost = 6\n`,
        ) as Record<string, unknown>,
        SERVER_FILE,
      ),
    { instanceOf: ConfigError },
  );
  for (const key of ['udp.host', 'tls.host', 'metrics.host'])
    t.true(
      err?.problems.some((p) => p.startsWith(`${SERVER_FILE}: ${key}: expected`)),
      `${key}: ${err?.problems.join(' | ')}`,
    );
});
