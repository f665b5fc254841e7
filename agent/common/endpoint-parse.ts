/**
 * "host:port" and "[v6]:port" from command lines and settings, and a host on its own. A host is an
 * IPv4 literal, an IPv6 literal (bracketed when a port follows, since the port would be ambiguous
 * otherwise; a zone such as %eth0 allowed for link-local) or a DNS name that may resolve to either
 * family (resolution is the caller's, at use: a name that moves is followed).
 */
import { isIP, isIPv6 } from 'node:net';
import { ConfigError, ErrorCodes } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

const LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;

/** A DNS name (RFC 1123 labels, at most 253 characters, an optional final dot); not all-numeric. */
export function isHostName(text: string): boolean {
  const name = text.endsWith('.') ? text.slice(0, -1) : text;
  if (name.length === 0 || name.length > 253) return false;
  const labels = name.split('.');
  // "1.2.3.256" or "10.1" are broken IPv4 literals, not names.
  if (labels.every((l) => /^\d+$/.test(l))) return false;
  return labels.every((l) => LABEL.test(l));
}

/**
 * Why `text` is not a host (IP literal of either family, or name), or null if it is one. Accepts a
 * bracketed IPv6 literal too ("[::1]"), which `parseHost` unwraps.
 */
export function hostProblem(text: string): string | null {
  const inner = /^\[(.*)\]$/.exec(text)?.[1];
  if (inner !== undefined) return isIPv6(inner) ? null : `${JSON.stringify(inner)} in brackets is not an IPv6 address`;
  if (isIP(text) !== 0 || isHostName(text)) return null;
  if (text.includes(':')) return 'not an IPv6 address (nor an IPv4 address or a host name)';
  if (/^[\d.]+$/.test(text)) return 'not an IPv4 address (each of four numbers 0-255, no leading zeros)';
  return 'not an IP address or a host name (letters, digits, hyphens and dots)';
}

/** A host on its own ("::1", "[::1]", "10.0.0.1", "example.net"): its plain form, brackets removed. */
export function parseHost(text: string, where: string): string {
  const problem = hostProblem(text);
  if (problem !== null) {
    throw new ConfigError([`${where}: expected an IPv4 or IPv6 address or a host name, found ${JSON.stringify(text)}: ${problem}`], {
      code: ErrorCodes.OPTIONS_INVALID,
    });
  }
  return text.startsWith('[') ? text.slice(1, -1) : text;
}

export function parseHostPort(text: string, where: string, defaultPort?: number): HostPort {
  const bad = (why: string): ConfigError =>
    new ConfigError(
      [
        `${where}: expected host:port (e.g. 127.0.0.1:7443, [2001:db8::1]:7443 or name.example:7443), found ${JSON.stringify(text)}: ${why}`,
      ],
      {
        code: ErrorCodes.OPTIONS_INVALID,
      },
    );
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(\d*))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
    if (!isIPv6(host)) throw bad(`${JSON.stringify(host)} in brackets is not an IPv6 address`);
  } else if (text.startsWith('[')) {
    throw bad('an IPv6 address in brackets must be followed by nothing or by :port');
  } else if (text.indexOf(':') !== text.lastIndexOf(':')) {
    // More than one colon: an IPv6 address. Without brackets its last group cannot be told from a port.
    if (isIPv6(text) && defaultPort !== undefined) return { host: text, port: defaultPort };
    throw bad(isIPv6(text) ? `write an IPv6 address with a port in brackets: [${text}]:PORT` : 'not an IPv6 address');
  } else {
    const i = text.indexOf(':');
    host = i < 0 ? text : text.slice(0, i);
    portText = i < 0 ? undefined : text.slice(i + 1);
    const problem = hostProblem(host);
    if (problem !== null) throw bad(host === '' ? 'no host' : problem);
  }
  if (portText === '') throw bad('no port after the colon');
  const port = portText === undefined ? defaultPort : Number(portText);
  if (port === undefined) throw bad('no port');
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw bad('the port must be 0-65535');
  return { host, port };
}
