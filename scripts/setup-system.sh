#!/usr/bin/env bash
# System packages Herald's checks use, from the distribution's package manager (idempotent).
# promtool (Debian `prometheus`) checks and unit-tests the alert rules.
# libavro-java (Apache Avro's reference implementation) is the independent encoder the wire-format
# tests compare Herald's codec with (tests/integration/test_wire_java.py; compiled with the JDK's javac).
# Chromium runs the web components' browser tests (Playwright drives /usr/bin/chromium; it never
# downloads a browser); Node.js and npm build the components' bundle.
set -euo pipefail
need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ -f /usr/share/java/avro.jar ] || need+=(libavro-java)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "!! setup: cannot install ${need[*]} (need root and apt-get); tests that need them will say so loudly" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (a second `make setup`, another checkout) instead of failing at once.
lock=(-o DPkg::Lock::Timeout=600)
apt-get "${lock[@]}" update -qq >/dev/null || true
apt-get "${lock[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
  || echo "!! setup: apt-get install ${need[*]} failed; tests that need them will say so loudly" >&2
# The Debian package starts a Prometheus server we do not want running (only when we just installed
# it: another prometheus on the machine, e.g. a test's, is not ours to stop).
if [[ " ${need[*]} " == *" prometheus "* ]]; then
  if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
  pkill -x prometheus >/dev/null 2>&1 || true
fi
