#!/bin/bash
# Screenshots of what a Home Assistant user gets, taken from a real Home Assistant, and the check
# that goes with them.
#
#   scripts/screenshots.sh            # take the pictures into screenshots/
#   scripts/screenshots.sh --check    # only check (pictures into a temporary directory)
#   scripts/screenshots.sh --out DIR  # pictures into DIR
#
# On loopback only, with free ports: Mosquitto, the daemon on the simulator (a 3-unit US2000C
# bank, scenario us2000c-3), Home Assistant (installed by scripts/homeassistant.sh into a cache
# directory outside the clone; the first run takes a few minutes) and headless Chromium (Debian's
# chromium package).  scripts/homeassistant_check.py, run with Home Assistant's Python, does the
# onboarding, adds the MQTT integration, uploads homeassistant/dashboard.yaml, sets the bank up
# as a home battery and validates Energy, checks devices, entities, the dashboard and Home
# Assistant's log, and takes the pictures.  Exit status: 0 all checks passed, 1 a check failed,
# 3 something needed is missing (Chromium, Mosquitto, root for the install).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out="$here/screenshots"
keep_pictures=1
energy_wait=1
while [ $# -gt 0 ]; do
    case "$1" in
    --check) keep_pictures=0 ;;
    --no-energy-wait) energy_wait=0 ;;  # quicker; Energy then reports statistics not yet defined
    --out) out=${2:?--out DIR}; shift ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
    esac
    shift
done

say() { printf 'screenshots.sh: %s\n' "$*" >&2; }
missing() { say "$*"; exit 3; }

chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || missing "no chromium (apt-get install chromium)"
command -v mosquitto >/dev/null || missing "no mosquitto (apt-get install mosquitto)"
if ! bash "$here/scripts/homeassistant.sh" path >/dev/null; then
    [ "$(id -u)" = 0 ] || missing "Home Assistant is not installed and installing it needs root"
fi
bash "$here/scripts/homeassistant.sh" install
python=python3
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"

work=$(mktemp -d /tmp/extra200tomqtt-screenshots.XXXXXX)
pids=()
cleanup() {
    local pid waited=0
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && [ $waited -lt 60 ]; do
            sleep 0.5
            waited=$((waited + 1))
        done
        kill -9 "$pid" 2>/dev/null || true  # Home Assistant that did not stop in 30 s
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
broker_port=$(free_port)
ha_port=$(free_port)
cdp_port=$(free_port)
mkdir -p "$work/config" "$work/out" "$work/state" "$work/chrome"

# -- Mosquitto
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$broker_port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)

# -- the daemon on the simulator, bank id pylontech (the shipped dashboard's)
cat >"$work/daemon.yaml" <<EOF
mqtt: {broker: 127.0.0.1, port: $broker_port, topic_base: victron-battery-middleware}
serial: {reading_freq: 2}
homeassistant: {bank_id: pylontech, bank_name: Battery bank}
logging: {level: INFO}
state_dir: $work/state
EOF
"$python" "$here/extra200tomqtt.py" --config "$work/daemon.yaml" --port "pylonsim://?scenario=us2000c-3" \
    >"$work/daemon.log" 2>&1 &
pids+=($!)

# -- Home Assistant
cat >"$work/config/configuration.yaml" <<EOF
homeassistant:
  name: Home
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: DE
  latitude: 52.52
  longitude: 13.40
  elevation: 34
  language: en
http:
  server_host: 127.0.0.1
  server_port: $ha_port
frontend:
config:
energy:
history:
logbook:
recorder:
  commit_interval: 1
lovelace:
onboarding:
api:
websocket_api:
person:
system_log:
logger:
  default: warning
EOF
# Onboarding: every step but the owner user done already (the core_config step would add
# integrations that need the internet: weather, radio, translation).
mkdir -p "$work/config/.storage"
printf '%s\n' '{"version": 4, "minor_version": 1, "key": "onboarding",
 "data": {"done": ["core_config", "analytics", "integration"]}}' >"$work/config/.storage/onboarding"
cp "$here/scripts/homeassistant_check.py" "$here/homeassistant/dashboard.yaml" "$work/"
bash "$here/scripts/homeassistant.sh" run "$work" >"$work/hass.out" 2>&1 &
pids+=($!)

# -- Chromium, headless, driven over its DevTools port
"$chromium" --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --hide-scrollbars --user-data-dir="$work/chrome" --remote-debugging-address=127.0.0.1 \
    --remote-debugging-port="$cdp_port" --window-size=1280,1500 about:blank >"$work/chromium.log" 2>&1 &
pids+=($!)

# -- what the daemon announced: the devices and entities Home Assistant must end up with
read -r devices entities < <("$python" - "$broker_port" <<'EOF'
import json, sys, time
import paho.mqtt.client as mqtt
configs = {}
if hasattr(mqtt, "CallbackAPIVersion"):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
else:
    client = mqtt.Client()
client.on_message = lambda c, u, m: configs.update({m.topic: m.payload})
client.on_connect = lambda c, *a: c.subscribe("homeassistant/device/+/config", qos=1)
client.connect("127.0.0.1", int(sys.argv[1]))
client.loop_start()
deadline = time.monotonic() + 90
while time.monotonic() < deadline and len([p for p in configs.values() if p]) < 4:
    time.sleep(1)
time.sleep(3)  # the last configs of the first poll
client.loop_stop()
docs = [json.loads(p) for p in configs.values() if p]
print(len(docs), sum(1 for d in docs for c in d["cmps"].values() if set(c) != {"p"}))
EOF
)
say "the daemon announced $devices devices with $entities entities"

status=0
bash "$here/scripts/homeassistant.sh" python "$work" /t/homeassistant_check.py \
    --url "http://127.0.0.1:$ha_port" --broker-port "$broker_port" --cdp-port "$cdp_port" \
    --dashboard /t/dashboard.yaml --log /t/config/home-assistant.log --out /t/out \
    --devices "$devices" --entities "$entities" --energy-wait "$energy_wait" || status=$?
if [ "$status" != 0 ]; then
    say "a check failed; the logs:"
    tail -n 20 "$work/daemon.log" "$work/config/home-assistant.log" >&2 || true
fi
if [ "$keep_pictures" = 1 ]; then
    mkdir -p "$out"
    cp "$work"/out/*.png "$out"/
    say "pictures in $out"
elif [ -n "${EXTRA200_SCREENSHOTS_REPORT:-}" ]; then
    cp "$work/out/report.json" "$EXTRA200_SCREENSHOTS_REPORT"
fi
exit "$status"
