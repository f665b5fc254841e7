#!/usr/bin/env bash
# Installs what the multi-node server specs and `npm run bench -- server` need: redis-server (Debian).
# Needs root; a no-op when present. The specs start their own redis-server on a free port; the
# package's own service is never started or used.
set -euo pipefail
if command -v redis-server >/dev/null; then echo "server: redis-server present"; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then echo "server: need root to install redis-server" >&2; exit 1; fi
echo "server: installing redis-server"
export DEBIAN_FRONTEND=noninteractive
# Keep the package's own service from starting (there is no init here; the specs run their own).
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Another apt-get may hold the lock: wait for it rather than fail.
apt-get -o DPkg::Lock::Timeout=300 update -qq || { sleep 30; apt-get -o DPkg::Lock::Timeout=300 update -qq; }
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends redis-server >/dev/null
echo "server: installed"
