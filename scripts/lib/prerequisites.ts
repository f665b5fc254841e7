/**
 * What the spec groups, the NAT lab and the benchmarks need from the system (Debian packages),
 * checked in one place: the test runner installs what is missing (as root, with apt-get), the
 * specs skip themselves with the same verdict, and the runner's closing summary names each group
 * it skipped and the one command that runs it.
 *
 * Checks look for files on the system PATH only: under `npm run`, node_modules/.bin comes first,
 * and an npm package there is called `nft` (a file tracer), which would pass for nftables.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';

export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A program the specs run, and the Debian packages that provide it. */
export interface Requirement {
  readonly command: string;
  readonly packages: readonly string[];
}

export interface PrerequisiteGroup {
  readonly name: string;
  /** Where its specs live (for the summary). */
  readonly specs: string;
  /** Why it needs what it needs, in a few words (printed when installing or skipping). */
  readonly why: string;
  readonly needsRoot: boolean;
  readonly requires: readonly Requirement[];
}

const REDIS: Requirement = { command: 'redis-server', packages: ['redis-server'] };
/** redis-cli creates the Redis Cluster the cluster specs and the bench run on (`--cluster create`). */
const REDIS_CLI: Requirement = { command: 'redis-cli', packages: ['redis-tools'] };

export const GROUPS = Object.freeze({
  lab: {
    name: 'NAT lab',
    specs: 'test/lab/',
    why: 'network namespaces as NAPT routers, a real UPnP/NAT-PMP gateway, Redis for two server nodes',
    needsRoot: true,
    requires: [
      { command: 'ip', packages: ['iproute2'] },
      { command: 'nft', packages: ['nftables'] },
      { command: 'conntrack', packages: ['conntrack'] },
      // miniupnpd's nftables flavour: the lab's routers use nftables, not iptables.
      { command: 'miniupnpd', packages: ['miniupnpd', 'miniupnpd-nftables'] },
      REDIS,
    ],
  },
  systemd: {
    name: 'systemd',
    specs: 'test/systemd/',
    why: 'systemd-nspawn boots a real systemd for the agent unit',
    needsRoot: true,
    requires: [{ command: 'systemd-nspawn', packages: ['systemd-container'] }],
  },
  redis: {
    name: 'Redis fleet',
    specs: 'test/server/ (redis-registry, redis-outage, two-nodes, redis-cluster*)',
    why: 'server nodes share a real redis-server, or a real Redis Cluster',
    needsRoot: false,
    requires: [REDIS, REDIS_CLI],
  },
} satisfies Record<string, PrerequisiteGroup>);

export type GroupName = keyof typeof GROUPS;
export const GROUP_NAMES = Object.keys(GROUPS) as GroupName[];

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

export function hasCommand(command: string): boolean {
  return SYSTEM_PATH.split(':').some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The requirements of a group whose program is not on the system. */
export function missing(group: GroupName): Requirement[] {
  return GROUPS[group].requires.filter((r) => !hasCommand(r.command));
}

/** Why a group cannot run here, or null when it can. */
export function unmetReason(group: GroupName): string | null {
  const g = GROUPS[group];
  if (g.needsRoot && !isRoot()) return `needs root (${g.why})`;
  const m = missing(group);
  return m.length === 0 ? null : `${m.map((r) => r.command).join(', ')} not installed (Debian: ${packagesOf(m).join(' ')})`;
}

export function packagesOf(requirements: readonly Requirement[]): string[] {
  return [...new Set(requirements.flatMap((r) => r.packages))];
}

/** The one command that runs a skipped group here. */
export function commandToRun(group: GroupName): string {
  if (!isRoot() && existsSync('/usr/bin/apt-get')) return 'sudo npm test   (as root, npm test installs what it lacks)';
  if (canInstall()) return 'npm test   (as root it installs what it lacks)';
  return `install ${packagesOf(missing(group)).join(' ')} (and run as root where the group needs it), then npm test`;
}

export const canInstall = (): boolean => isRoot() && existsSync('/usr/bin/apt-get');

/** Set by the test runner, which names skipped groups itself: the specs then stay quiet. */
export const RUNNER_ENV = 'PEERLINK_TEST_RUNNER';

/** A spec file's loud line for a skipped group, unless the test runner already says it. */
export function announceSkip(group: GroupName, reason: string): void {
  if (process.env[RUNNER_ENV] === '1') return;
  process.stderr.write(`\n*** ${GROUPS[group].name} specs SKIPPED: ${reason}. Run \`npm test\` as root: it installs them. ***\n\n`);
}

export interface InstallResult {
  readonly ok: boolean;
  /** apt-get's output when it failed. */
  readonly output: string;
}

/**
 * Installs Debian packages with apt-get, quietly and without starting their services (there is
 * no init to start them, and the specs run their own instances on free ports).
 */
export function installPackages(packages: readonly string[]): InstallResult {
  const script = [
    'set -e',
    'export DEBIAN_FRONTEND=noninteractive',
    // miniupnpd's postinst asks debconf questions and tries to start a service: answer and prevent it.
    "echo 'miniupnpd miniupnpd/start_daemon boolean false' | debconf-set-selections 2>/dev/null || true",
    'made=0',
    "if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; made=1; fi",
    "trap '[ $made = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT",
    // Another apt-get may hold the lock: wait for it rather than fail.
    'apt-get -o DPkg::Lock::Timeout=300 update -qq',
    `apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends ${packages.join(' ')}`,
  ].join('\n');
  const r = spawnSync('bash', ['-c', script], {
    encoding: 'utf8',
    env: { ...process.env, PATH: SYSTEM_PATH },
    maxBuffer: 64 * 1024 * 1024,
  });
  return { ok: r.status === 0, output: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/**
 * Makes the groups' programs present when it can (root with apt-get), with one line saying what
 * it installs and why; a no-op that spawns nothing when all is present.
 */
export function ensureGroups(groups: readonly GroupName[], say: (line: string) => void): InstallResult {
  const wanted = groups.filter((g) => !(GROUPS[g].needsRoot && !isRoot()));
  const lacking = wanted.flatMap((g) => missing(g));
  if (lacking.length === 0 || !canInstall()) return { ok: true, output: '' };
  const packages = packagesOf(lacking);
  const why = wanted.filter((g) => missing(g).length > 0).map((g) => `${GROUPS[g].name}: ${GROUPS[g].why}`);
  say(`installing ${packages.join(' ')} with apt-get, for ${why.join('; ')}`);
  return installPackages(packages);
}
