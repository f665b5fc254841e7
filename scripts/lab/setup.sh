#!/usr/bin/env bash
# Installs what the NAT lab and the systemd specs need (Debian packages). Needs root; a no-op when all is present.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v miniupnpd >/dev/null || need+=(miniupnpd miniupnpd-nftables)
# systemd-nspawn boots a real systemd for test/systemd/ (the agent's unit).
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ ${#need[@]} -eq 0 ]; then echo "lab: all packages present"; exit 0; fi
if [ "$(id -u)" -ne 0 ]; then echo "lab: need root to install ${need[*]}" >&2; exit 1; fi
echo "lab: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# miniupnpd's postinst asks debconf questions and tries to start a service: answer and prevent it.
echo 'miniupnpd miniupnpd/start_daemon boolean false' | debconf-set-selections || true
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "lab: installed"
