#!/usr/bin/env bash
# Try extra200tomqtt without a battery or a broker: set up, poll the built-in simulator once,
# then run the daemon against it, printing every Victron payload it would publish (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python extra200tomqtt.py --port pylonsim:// --once
exec .venv/bin/python extra200tomqtt.py --port pylonsim:// --dry-run --state-dir .venv/demo-state
