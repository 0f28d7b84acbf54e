"""The daemon's discovery in a real Home Assistant, with the shipped dashboard in a real browser.

``scripts/screenshots.sh --check`` does the work (Mosquitto, the daemon on the simulator's 3-unit
bank, Home Assistant and headless Chromium, all on loopback) and reports every check in JSON;
this test runs it and reads the report: the devices and entities the daemon announced exist in
Home Assistant (both platforms), the dashboard's entities exist and are available, each view
renders its cards without an "entity not available" warning, Energy validates the bank as a home
battery once the recorder compiled its first statistics, and Home Assistant logged no warning.

Skipped when Home Assistant is not installed (``scripts/homeassistant.sh install``, a few minutes,
cached outside the clone), or Chromium or Mosquitto is missing; ``EXTRA200_SKIP_REAL_HA=1`` skips
it where CI runs it as its own step.  It takes about 6 minutes (the recorder's statistics).
"""

import json
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

SCRIPTS = os.path.join(ROOT, "scripts")


def _home_assistant_missing() -> str:
    if os.environ.get("EXTRA200_SKIP_REAL_HA") == "1":
        return "EXTRA200_SKIP_REAL_HA=1"
    if os.geteuid() != 0:
        return "Home Assistant runs in a chroot: root only"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "no chromium (apt-get install chromium)"
    if not shutil.which("mosquitto"):
        return "no mosquitto"
    found = subprocess.run(
        ["bash", os.path.join(SCRIPTS, "homeassistant.sh"), "path"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    if found.returncode != 0:
        return "Home Assistant is not installed (bash scripts/homeassistant.sh install)"
    return ""


@pytest.mark.skipif(bool(_home_assistant_missing()), reason=_home_assistant_missing() or "ready")
def test_a_real_home_assistant_gets_the_bank_the_dashboard_and_energy(tmp_path):
    report = tmp_path / "report.json"
    run = subprocess.run(
        ["bash", os.path.join(SCRIPTS, "screenshots.sh"), "--check"],
        env=dict(os.environ, EXTRA200_SCREENSHOTS_REPORT=str(report)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=1200,
        check=False,
    )
    assert report.exists(), run.stdout[-5000:]
    checks = json.loads(report.read_text())
    failed = [c for c in checks if not c["ok"]]
    assert failed == [], run.stdout[-5000:]
    names = {c["check"] for c in checks}
    for expected in (
        "devices",
        "entities",
        "platforms",
        "the dashboard's entities exist",
        "dashboard entities available",
        "Energy validation clean",
        "Home Assistant's log has no warning or error",
    ):
        assert expected in names
    assert sum(1 for n in names if n.endswith("without warnings")) == 3  # the dashboard's three views
    assert run.returncode == 0, run.stdout[-5000:]
