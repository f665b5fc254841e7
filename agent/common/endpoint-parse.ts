/** "host:port" and "[v6]:port" from command lines and settings. */
import { ConfigError, ErrorCodes } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(text: string, where: string, defaultPort?: number): HostPort {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  const host = m?.[1];
  const portText = m?.[2];
  const port = portText === undefined ? defaultPort : Number(portText);
  if (!host || port === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError([`${where}: expected host:port (e.g. 127.0.0.1:7443), found ${JSON.stringify(text)}`], {
      code: ErrorCodes.OPTIONS_INVALID,
    });
  }
  return { host, port };
}
