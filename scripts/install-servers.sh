#!/usr/bin/env bash
# The database servers the backend tests start (each on a free loopback port with a
# temporary data directory): Debian's influxdb (1.x) and victoria-metrics. Needs root
# (or sudo); skipped when both are already installed.
set -euo pipefail
need=()
command -v influxd >/dev/null 2>&1 || need+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || [ -x /usr/bin/victoria-metrics ] || need+=(victoria-metrics)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts the packaged services; the tests run their own instances.
$sudo systemctl stop influxdb victoria-metrics >/dev/null 2>&1 || true
