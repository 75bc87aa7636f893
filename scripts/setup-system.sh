#!/usr/bin/env bash
# System packages Herald's checks use, from the distribution's package manager (idempotent).
# promtool (Debian `prometheus`) checks and unit-tests the alert rules.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "!! setup: cannot install ${need[*]} (need root and apt-get); tests that need them will say so loudly" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "!! setup: apt-get install ${need[*]} failed; tests that need them will say so loudly" >&2
# The Debian package starts a Prometheus server we do not want running.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
pkill -x prometheus >/dev/null 2>&1 || true
