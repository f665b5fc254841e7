/** The IPv4 default gateway, from the kernel's routing table (Linux /proc/net/route). */
import { readFile } from 'node:fs/promises';

export async function defaultGateway4(routeFile = '/proc/net/route'): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(routeFile, 'utf8');
  } catch {
    return null;
  }
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
