/** The IPv4 default gateway, from the kernel's routing table (Linux /proc/<pid>/net/route). */
import { readFile } from 'node:fs/promises';

/**
 * The process's own view first: under systemd's ProcSubset=pid (the agent's unit) /proc/net is
 * hidden, while /proc/self/net, inside our own /proc/<pid>, stays readable.
 */
export const ROUTE_FILES = ['/proc/self/net/route', '/proc/net/route'] as const;

export async function defaultGateway4(routeFiles: string | readonly string[] = ROUTE_FILES): Promise<string | null> {
  let text: string | null = null;
  for (const file of typeof routeFiles === 'string' ? [routeFiles] : routeFiles) {
    text = await readFile(file, 'utf8').catch(() => null);
    if (text !== null) break;
  }
  if (text === null) return null;
  for (const line of text.split('\n').slice(1)) {
    const [, destination, gateway, flags] = line.trim().split(/\s+/);
    // Destination 0.0.0.0 with the gateway flag (0x2): the default route. Fields are little-endian hex.
    if (destination === '00000000' && gateway && flags && (parseInt(flags, 16) & 0x2) !== 0) {
      const n = parseInt(gateway, 16);
      return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join('.');
    }
  }
  return null;
}
