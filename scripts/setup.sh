#!/usr/bin/env bash
# Set up a virtual environment in .venv with the runtime dependencies (and, with --test,
# the test tools and the servers the tests start: Mosquitto, MariaDB, daemontools, shellcheck, D-Bus).
# Works on a fresh Debian / Raspberry Pi OS machine; uses sudo when not run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
if [ "$want_test" -eq 1 ]; then
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || packages+=(mosquitto)
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || packages+=(mariadb-server)
  command -v svscan >/dev/null 2>&1 || packages+=(daemontools)
  command -v shellcheck >/dev/null 2>&1 || packages+=(shellcheck)
  command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
  command -v setpriv >/dev/null 2>&1 || packages+=(util-linux)
  command -v openssl >/dev/null 2>&1 || packages+=(openssl)
  # The real dbus-mqtt-battery driver (../shared/victron-driver) runs on Debian's D-Bus bindings.
  command -v dbus-daemon >/dev/null 2>&1 || packages+=(dbus)
  /usr/bin/python3 -c 'import dbus' 2>/dev/null || packages+=(python3-dbus)
  /usr/bin/python3 -c 'import gi' 2>/dev/null || packages+=(python3-gi)
fi
if [ "${#packages[@]}" -gt 0 ]; then
  echo "Installing Debian packages: ${packages[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$want_test" -eq 1 ]; then
  .venv/bin/python -m pip install -q -r requirements-test.txt
  # paho-mqtt 1.6 beside 2.x, so the tests can prove both work (Venus OS and Debian ship different ones).
  [ -d .venv/paho16/paho ] || .venv/bin/python -m pip install -q --target .venv/paho16 "paho-mqtt==1.6.1"
else
  .venv/bin/python -m pip install -q -r requirements.txt
fi
echo "Ready: .venv/bin/python extra200tomqtt.py --help"
