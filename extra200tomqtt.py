#!/usr/bin/env python3
"""extra200tomqtt: Pylontech / Pytes battery console to MQTT (Victron dbus-mqtt-battery, Home Assistant).

A thin entry point; the program lives in the ``extra200`` package beside it.
Run ``python3 extra200tomqtt.py --help`` for the options.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from extra200.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
