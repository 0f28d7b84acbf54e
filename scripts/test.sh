#!/usr/bin/env bash
# Set up everything the tests need (see setup.sh --test) and run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k parsing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
