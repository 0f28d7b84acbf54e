"""A Pylontech / Pytes console simulator, for tests, the benchmark and trying the program without a battery.

It speaks the console the way the real one does (``docs/console-protocol.md``):
echo, ``@`` / ``$$`` framing with the firmware's mixed line ends, prompts and
``login debug``, paging, error replies, baud mismatch garbage, the asleep
console woken by the 1200-baud frame, and replies paced at the line's rate.
The bank it describes comes from a scenario file (``scenarios/*.yaml``, format
at the top of ``scenarios/us2000c-3.yaml``); values drift while charging or
discharging and a timeline scripts faults.

Ways in:

* ``register()`` then ``serial.serial_for_url("pylonsim://...")`` (module
  ``protocol_pylonsim``), in-process; ``port.bank`` changes the bank live;
* ``PtySimulator(scenario).start()`` on a real pseudo-terminal (``ptysim``);
* ``main(argv)``: ``extra200tomqtt.py simulate [SCENARIO] [--replay DIR] [--link PATH]`` (``cli``).

Modules: ``scenario`` (YAML to a checked ``Scenario``), ``firmware`` (layout
presets), ``bank`` (live state, drift, timeline, control API), ``render``
(reply text), ``console`` (the shell and the paced line), ``replay``
(recorded replies), ``protocol_pylonsim``, ``ptysim``, ``cli``.
"""

from typing import List

from .bank import Bank, UnitSnapshot
from .console import WAKE_FRAME, Console
from .firmware import PRESETS, Firmware
from .ptysim import PtySimulator
from .scenario import Scenario, ScenarioError, load_scenario, shipped_scenarios

PACKAGE = "extra200.simulator"

__all__ = [
    "Bank",
    "Console",
    "Firmware",
    "PRESETS",
    "PtySimulator",
    "Scenario",
    "ScenarioError",
    "UnitSnapshot",
    "WAKE_FRAME",
    "load_scenario",
    "main",
    "register",
    "shipped_scenarios",
]


def register() -> None:
    """Make ``serial.serial_for_url`` know ``pylonsim://`` (idempotent)."""
    import serial

    if PACKAGE not in serial.protocol_handler_packages:
        serial.protocol_handler_packages.append(PACKAGE)


def main(argv: List[str]) -> int:
    """``simulate [SCENARIO] [--replay DIR] [--link PATH] ...``: serve on a pseudo-terminal until SIGINT/SIGTERM."""
    from .cli import run

    return run(argv)
