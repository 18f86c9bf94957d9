#!/usr/bin/env bash
# The servers and the browser the tests start themselves (each on a free loopback port with a
# temporary data directory): Debian's influxdb (1.x), victoria-metrics, prometheus,
# postgresql (15) and chromium with chromium-driver. Needs root (or sudo); skipped when all
# are already installed.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have influxd || need+=(influxdb)
have /usr/bin/victoria-metrics || need+=(victoria-metrics)
have /usr/bin/prometheus || need+=(prometheus)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
have /usr/bin/chromium || need+=(chromium)
have /usr/bin/chromedriver || need+=(chromium-driver)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; the tests run their own instances.
for s in influxdb victoria-metrics prometheus postgresql; do
    $sudo systemctl stop "$s" >/dev/null 2>&1 || $sudo service "$s" stop >/dev/null 2>&1 || true
done
