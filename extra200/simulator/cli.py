"""``extra200tomqtt.py simulate``: serve a simulated console on a pseudo-terminal until SIGINT / SIGTERM.

Prints the terminal's path alone on the first line of standard output (for
scripts), a human note on standard error, and exits 0 on a signal; 2 when the
arguments or the scenario are wrong.
"""

import argparse
import logging
import signal
import sys
import threading
from typing import Any, Dict, List, Optional

from .ptysim import PtySimulator
from .scenario import DEFAULT_SCENARIO, ScenarioError, shipped_scenarios

logger = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extra200tomqtt.py simulate",
        description="Serve a simulated Pylontech / Pytes console on a pseudo-terminal.",
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        default=DEFAULT_SCENARIO,
        help="a shipped scenario (%s) or a YAML file; default %s" % (", ".join(shipped_scenarios()), DEFAULT_SCENARIO),
    )
    parser.add_argument("--replay", metavar="DIR", help="answer from recorded reply files (pwr.txt, bat_1.txt ...)")
    parser.add_argument("--link", metavar="PATH", help="also make PATH (e.g. /tmp/ttyPYLON) a symlink to the terminal")
    parser.add_argument("--speed", type=float, help="simulated seconds per real second")
    parser.add_argument("--no-drift", action="store_true", help="freeze the values")
    parser.add_argument("--latency", type=float, help="seconds before a reply starts")
    return parser


def run(argv: List[str]) -> int:
    argv = list(argv)
    if argv and argv[0] == "simulate":
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    overrides: Dict[str, Any] = {}
    if args.speed is not None:
        overrides["speed"] = args.speed
    if args.no_drift:
        overrides["drift"] = False
    if args.latency is not None:
        overrides["latency"] = args.latency
    try:
        simulator = PtySimulator(args.scenario, replay=args.replay, link=args.link, **overrides)
        path = simulator.start()
    except ScenarioError as exc:
        print("simulate: %s" % "\n  ".join([exc.source] + exc.problems), file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:
        print("simulate: %s" % exc, file=sys.stderr)
        return 2
    print(path, flush=True)
    print(
        "simulate: %s (%s, %d baud) on %s%s; Ctrl-C stops"
        % (
            simulator.scenario.name,
            simulator.scenario.firmware.name,
            simulator.scenario.console_baud,
            path,
            ", linked at %s" % args.link if args.link else "",
        ),
        file=sys.stderr,
        flush=True,
    )
    stopped = threading.Event()
    previous: Dict[int, Any] = {}

    def on_signal(signum: int, _frame: Optional[Any]) -> None:
        stopped.set()

    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
        while not stopped.wait(1.0):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        simulator.stop()
    logger.info("simulator stopped")
    return 0
