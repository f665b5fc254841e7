/** peerlink's importable API: the client library, the server and the agent as components. */
export { connect, createClient, type Client, type ClientOptions, type OpenOptions, type Tunnel } from './client/client.js';
export { createRendezvousServer, type RendezvousServer, type RendezvousServerOptions } from './server/server.js';
export { createAgent, type Agent, type AgentOptions } from './device/agent.js';
export { loadIdentity } from './device/identity.js';
export { parseIdentity, type DeviceIdentity } from './protocol/identity-file.js';
export { loadAgentSettings, checkAgentSettings, type AgentSettings } from './device/settings.js';
export { loadServerSettings, type ServerSettings } from './server/settings.js';
export { PeerlinkError, ConfigError, ProtocolError, ErrorCodes, type ErrorCode } from './common/errors.js';
export { createMemoryRegistry, type Registry, type RegistryEntry } from './server/registry.js';
export { pair, ownerRequest, setPassword, type OwnerClientOptions } from './client/owner-client.js';
export { defaultPairingDir, loadPairing, savePairing, type Pairing } from './client/pairings.js';
