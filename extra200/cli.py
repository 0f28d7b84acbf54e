"""The command line: run the daemon, poll once, start the simulator, generate Home Assistant YAML.

Exit status: 0 clean stop (or ``--once`` with every expected unit answering),
1 a runtime failure, 2 a configuration or usage error (restarting won't help).
"""

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from typing import List, Optional

from . import __version__
from .config import Config, ConfigError, load_config, replace
from .files import ReportingFileHandler
from .validation import ValidationError

logger = logging.getLogger("extra200")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config.yaml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extra200tomqtt.py",
        description="Read a Pylontech / Pytes battery console and publish it to MQTT "
        "(Victron dbus-mqtt-battery, Home Assistant).",
    )
    parser.add_argument("--version", action="version", version="extra200tomqtt %s" % __version__)
    parser.add_argument("--config", help="configuration file (default: config.yaml beside the program)")
    parser.add_argument(
        "--port",
        help="serial port or URL, overrides serial.port (/dev/ttyUSB0, socket://host:port, rfc2217://host:port, pylonsim://)",
    )
    parser.add_argument("--log-file", help="log file, overrides logging.file_path (env EXTRA200_LOG_FILE)")
    parser.add_argument("--state-dir", help="persistent data directory, overrides state_dir (env EXTRA200_STATE_DIR)")
    parser.add_argument(
        "--once", action="store_true", help="poll once, print the payloads as JSON and exit (0 when every expected unit answered)"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="run without MQTT, printing every Victron message to standard output instead"
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("simulate", add_help=False, help="run the built-in battery simulator on a pseudo-terminal (simulate --help)")
    yaml_cmd = sub.add_parser("homeassistant-yaml", help="print Home Assistant manual MQTT sensor YAML")
    yaml_cmd.add_argument("--batteries", type=int, default=3)
    yaml_cmd.add_argument("--cells", type=int, default=15)
    yaml_cmd.add_argument("--level", default="low", choices=["off", "low", "medium", "high"])
    yaml_cmd.add_argument("--dashboard", action="store_true", help="print the dashboard (Lovelace YAML) instead")
    yaml_cmd.add_argument(
        "--bank-id", default="", help="default: homeassistant.bank_id, else the one the daemon uses (state_dir), else pylontech"
    )
    sub.add_parser("check-config", help="validate the configuration file and exit")
    return parser


def setup_logging(config: Config, log_file: Optional[str]) -> None:
    """Standard error always; a rotating file as well when one is configured and writable."""
    root = logging.getLogger()
    root.setLevel(getattr(logging, config.logging.level))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    root.addHandler(stderr)
    if log_file:
        try:
            directory = os.path.dirname(os.path.abspath(log_file))
            os.makedirs(directory, exist_ok=True)
            handler = ReportingFileHandler(
                log_file,
                lambda message: sys.stderr.write("extra200tomqtt: %s\n" % message),
                maxBytes=config.logging.file_max_size_kb * 1024,
                backupCount=config.logging.file_max_files,
                encoding="utf-8",
                delay=False,
            )
        except OSError as exc:
            logger.warning("cannot write the log file %s (%s); logging to standard error only", log_file, exc)
            return
        handler.setFormatter(formatter)
        root.addHandler(handler)


def _load(args: argparse.Namespace) -> Config:
    path = args.config or DEFAULT_CONFIG
    if args.config is None and not os.path.exists(path):
        return Config()
    return load_config(path)


def named_file_problems(config: Config, port: Optional[str]) -> List[str]:
    """What is wrong with the files the configuration (or ``--port``) names and the daemon reads at start:
    the events catalogue, and the scenario of a ``pylonsim://`` port; each as ``key: problem``."""
    problems: List[str] = []
    if config.events.enabled and config.events.catalogue_file:
        from .events import CatalogueError, EventCatalogue

        try:
            EventCatalogue.builtin().load_overrides(config.events.catalogue_file)
        except CatalogueError as exc:
            problems.extend(exc.under("events.catalogue_file"))
    if port and port.strip().lower().startswith("pylonsim:"):
        from serial import SerialException

        from .simulator.protocol_pylonsim import console_for_url

        try:
            console_for_url(port)
        except SerialException as exc:
            problems.append("--port: %s" % exc)
    return problems


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # the simulator parses its own options (and its own --help)
        from .simulator import main as simulate

        return simulate(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        path = args.config or DEFAULT_CONFIG
        problems = named_file_problems(config, args.port or config.serial.port)
        if problems:
            print(ValidationError(problems, path).report(), file=sys.stderr)
            return EXIT_CONFIG
        print("%s is valid" % path)
        return EXIT_OK
    if args.command == "homeassistant-yaml":
        from .homeassistant import (
            DEFAULT_BANK_ID,
            DEFAULT_BANK_NAME,
            expire_after_for,
            recorded_bank_id,
            render_dashboard_yaml,
            render_manual_yaml,
        )

        bank_id = args.bank_id or config.homeassistant.bank_id or recorded_bank_id(config.state_dir) or DEFAULT_BANK_ID
        if args.dashboard:
            sys.stdout.write(render_dashboard_yaml(args.batteries, bank_id, args.cells))
            return EXIT_OK
        sys.stdout.write(
            render_manual_yaml(
                batteries=args.batteries,
                cells_per_battery=args.cells,
                level=args.level,
                topic_base=config.mqtt.topic_base,
                bank_id=bank_id,
                bank_name=config.homeassistant.bank_name or DEFAULT_BANK_NAME,
                expire_after=expire_after_for(config),
            )
        )
        return EXIT_OK

    # Command line and environment win over the file (start.sh points the log at its RAM disk).
    log_file = args.log_file or os.environ.get("EXTRA200_LOG_FILE") or config.logging.file_path
    state_dir = args.state_dir or os.environ.get("EXTRA200_STATE_DIR") or config.state_dir
    config = replace(dataclasses.replace(config, state_dir=state_dir), "logging", file_path=log_file)
    port = args.port or config.serial.port
    setup_logging(config, None if args.once else (log_file or None))

    from .daemon import Daemon
    from .events import CatalogueError
    from .poller import PollFailed

    try:
        daemon = Daemon(config, port, dry_run=args.dry_run)
    except CatalogueError as exc:
        logger.error("%s", exc)
        return EXIT_CONFIG
    if args.once:
        try:
            result = daemon.once()
        except PollFailed as exc:
            logger.error("no data from %s: %s", port, exc)
            return EXIT_FAILURE
        json.dump(result, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
        return EXIT_OK if daemon.once_complete else EXIT_FAILURE

    from .supervision import die_with_parent

    die_with_parent()
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    logger.info("extra200tomqtt %s starting: port %s, state in %s", __version__, port, state_dir)
    try:
        return daemon.run(stop)
    except Exception:  # the supervisor restarts us; say why first
        logger.exception("the daemon failed")
        return EXIT_FAILURE
