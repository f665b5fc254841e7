/**
 * The cipher order of the server's TLS port. Node's default puts TLS_AES_256_GCM_SHA384 first;
 * the server asks for TLS_AES_128_GCM_SHA256 first (honorCipherOrder), as the end-to-end channel
 * does (TUNNEL_CIPHER): 128-bit AES-GCM is not a weaker choice for this use, and it is cheaper per
 * byte, which is what the relay pays twice for every relayed byte (docs/measurements.md). Clients
 * that offer only the others still get them; TLS 1.2 suites stay Node's defaults.
 */
import { DEFAULT_CIPHERS } from 'node:tls';

const TLS13_ORDER = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

export const SERVER_TLS_CIPHERS = [...TLS13_ORDER, ...DEFAULT_CIPHERS.split(':').filter((c) => !c.startsWith('TLS_'))].join(':');
