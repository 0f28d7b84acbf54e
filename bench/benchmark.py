#!/usr/bin/env python3
"""Benchmark: the daemon against the simulated console at real baud rates, measured from outside.

For each case (baud x units x cells) the script starts a Mosquitto broker, the
simulated bank on a pseudo-terminal (paced at the case's baud, as a real
console line is) and the daemon as a subprocess, and measures:

* per poll cycle, from the moment the console receives ``pwr`` to the last
  MQTT message that poll produced (seen by a subscriber): the wall time; the
  wire time of the bytes the console actually sent in that cycle at that baud
  (echo, reply, prompts: the physical limit, as the command overlaps its
  echo) plus the console's own response latency per command; their ratio;
* the daemon's CPU time per cycle, and while idle between polls (from
  ``/proc/<pid>/stat``), and its peak memory (``VmHWM`` in ``/proc/<pid>/status``);
* the MQTT connections it opened (the broker's log) and the messages it sent
  (the subscriber);
* the time from start to the first message and to the first bank message.

``--compare CMD`` runs another program against the same simulated console
and broker and measures the same figures from outside (placeholders
``{tty}``, ``{mqtt_host}``, ``{mqtt_port}``).  Run by hand, not in CI;
``bench/README.md`` has the figures measured so far and how to reproduce them.
"""

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from daemon_helpers import ENTRY, write_config  # noqa: E402
from extra200.simulator import PtySimulator  # noqa: E402
from mqtt_helpers import Recorder  # noqa: E402
from servers import Mosquitto  # noqa: E402

BITS_PER_BYTE = 10  # 8N1: start, 8 data, stop
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
LATENCY = 0.005  # the simulated console's response latency (the scenario default), seconds per command
TOPIC_BASE = "bench"


# ------------------------------------------------------------------ the simulated console


@dataclass
class Wire:
    """What crossed the simulated console's line, timed on the benchmark's monotonic clock."""

    commands: List[Tuple[float, str]] = field(default_factory=list)  # (received, command line)
    chunks: List[Tuple[float, float, int]] = field(default_factory=list)  # (queued, last byte arrives, bytes)
    lock: threading.Lock = field(default_factory=threading.Lock)


def instrument(sim: PtySimulator) -> Wire:
    """Record every command line the console receives and every chunk of bytes it sends."""
    wire = Wire()
    console, line = sim.console, bytearray()
    receive, send = console.receive, console.output.send
    started: List[float] = []

    def receiving(data: bytes, baud: int, now: Optional[float] = None) -> float:
        moment = time.monotonic()
        for byte in bytearray(data):
            if byte in (0x0D, 0x0A):
                text = bytes(line).decode("latin-1").strip()
                if text:
                    with wire.lock:
                        wire.commands.append((started[0] if started else moment, text))
                line.clear()
                started.clear()
            else:
                if not line:
                    started.append(moment)
                line.append(byte)
        return receive(data, baud, now)

    def sending(data: bytes, earliest: float, seconds_per_byte: float) -> float:
        arrives = send(data, earliest, seconds_per_byte)
        if data:
            with wire.lock:
                wire.chunks.append((time.monotonic(), arrives, len(data)))
        return arrives

    console.receive = receiving  # type: ignore[assignment]
    console.output.send = sending  # type: ignore[assignment]
    return wire


def scenario(baud: int, units: int, cells: int, firmware: str = "us2000c-b67") -> Dict[str, Any]:
    """A bank of ``units`` units of ``cells`` cells, discharging: US2000C-style (16-row pwr table) by default;
    ``extra2000``: no pwr table, asleep until the wake-up frame, data commands only after ``login debug``."""
    offsets = [0, 1, -1, 2, 0, 1, 0, -2, 1, 0, 2, -1, 0, 1, 0, 1][:cells]
    extra = {"asleep": True, "login_required": True} if firmware == "extra2000" else {}
    return {
        **extra,
        "name": "bench %d x %d cells at %d" % (units, cells, baud),
        "firmware": firmware,
        "console_baud": baud,
        "latency": LATENCY,
        "units": units,
        "clock": "2025-06-01 12:00:00",
        "defaults": {
            "cells": cells,
            "current": -3.2,
            "soc": 80,
            "cell_voltage": 3.318,
            "cell_offsets": offsets,
            "stats": {"cycles": 212, "soh": 98},
        },
    }


# ----------------------------------------------------------------------- the measured process


def _descendants(pid: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system time of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / float(CLOCK_TICK)


def peak_rss_kb(pids: Sequence[int]) -> int:
    """The largest VmHWM (peak resident set) among the processes, in kB."""
    peak = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
    return peak


class Sampler(threading.Thread):
    """Reads the process tree's CPU time every ``interval`` seconds: (monotonic time, CPU seconds)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: List[Tuple[float, float]] = []
        self.peak_kb = 0
        self._halt = threading.Event()
        self._pids = [pid]
        self._refreshed = 0.0

    def run(self) -> None:
        while not self._halt.is_set():
            now = time.monotonic()
            if now - self._refreshed > 1.0:
                self._pids = _descendants(self.pid)
                self._refreshed = now
            self.samples.append((now, cpu_seconds(self._pids)))
            self.peak_kb = max(self.peak_kb, peak_rss_kb(self._pids))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_at(self, moment: float) -> float:
        """CPU seconds used by ``moment`` (the last sample taken at or before it)."""
        value = self.samples[0][1] if self.samples else 0.0
        for taken, cpu in self.samples:
            if taken > moment:
                break
            value = cpu
        return value


# ------------------------------------------------------------------------------ one run


@dataclass
class Cycle:
    start: float
    commands: List[str]
    console_bytes: int
    wire: float  # seconds the console's bytes take at the baud
    end: float  # the later of the cycle's last MQTT message and the last byte its commands drew
    messages: int
    bank_at: Optional[float] = None  # the cycle's bank message, when it published one

    @property
    def bank_latency(self) -> Optional[float]:
        """From the poll's first command to its bank message: how old the published state is."""
        return self.bank_at - self.start if self.bank_at is not None else None

    @property
    def wall(self) -> float:
        return self.end - self.start

    @property
    def limit(self) -> float:
        return self.wire + LATENCY * len(self.commands)

    @property
    def kind(self) -> str:
        return " + ".join(sorted(set(_family(c) for c in self.commands)))


@dataclass
class Run:
    label: str
    baud: int
    units: int
    cells: int
    started: float
    first_message: Optional[float] = None
    first_bank: Optional[float] = None
    cycles: List[Cycle] = field(default_factory=list)
    window: Tuple[float, float] = (0.0, 0.0)
    cpu_window: float = 0.0
    idle_seconds: float = 0.0
    idle_cpu: float = 0.0
    peak_kb: int = 0
    connections: int = 0
    messages: int = 0
    exit_status: Optional[int] = None


def poll_starts(
    commands: Sequence[Tuple[float, str]], messages: Sequence[Tuple[float, str]], cycle_command: str, bank_topic: Optional[str]
) -> List[float]:
    """When each poll began.  A poll reads its first command (``pwr``) twice or more, until two reads
    agree: a ``cycle_command`` starts a new poll only once the poll before it has published its bank
    message (without a bank topic, as for another program, each ``cycle_command`` starts one)."""
    banks = [t for t, topic in messages if topic == bank_topic] if bank_topic else []
    starts: List[float] = []
    for moment, command in commands:
        if command != cycle_command:
            continue
        if not starts or not bank_topic or any(starts[-1] <= t < moment for t in banks):
            starts.append(moment)
    return starts


def _family(command: str) -> str:
    """``bat 3`` -> ``bat N``."""
    return command.split()[0] + (" N" if " " in command.strip() else "")


def steady_families(cycle_command: str) -> Tuple[str, ...]:
    """The commands of a steady poll: the ``pwr`` table; without it (the cycle command is ``pwr 1``),
    ``pwr N`` and ``bat N`` for every unit, every poll (the cells are the only source of cell extremes)."""
    return ("pwr N", "bat N") if " " in cycle_command else (cycle_command,)


def settle_until_steady(wire: Wire, cycle_command: Optional[str], quiet: float, limit: float = 180.0) -> None:
    """Wait until the console has heard nothing but a steady poll's commands for ``quiet`` seconds
    (None, another program: just ``quiet``)."""
    steady = steady_families(cycle_command) if cycle_command else ()
    started = time.monotonic()
    while time.monotonic() < started + limit:
        with wire.lock:
            others = [t for t, c in wire.commands if _family(c) not in steady]
        since = time.monotonic() - max(others + [started])
        if since >= quiet:
            return
        time.sleep(min(quiet - since, 1.0))


def split_cycles(
    wire: Wire, messages: Sequence[Tuple[float, str]], baud: int, cycle_command: str, bank_topic: Optional[str] = None
) -> List[Cycle]:
    """Cut the exchange into poll cycles (``poll_starts``); messages go to the cycle whose replies produced
    them (a cycle cannot publish before its own first reply has fully arrived)."""
    with wire.lock:
        commands, chunks = list(wire.commands), list(wire.chunks)
    starts = poll_starts(commands, messages, cycle_command, bank_topic)
    cycles: List[Cycle] = []
    for index, start in enumerate(starts):
        following = starts[index + 1] if index + 1 < len(starts) else float("inf")
        mine = [c for c in chunks if start <= c[0] < following]
        if not mine:
            continue
        later = [c for c in chunks if c[0] >= following]
        # the next cycle's first reply: nothing it publishes can arrive before that
        boundary = min((c[1] for c in later if c[2] > 64), default=float("inf"))
        sent = [(t, topic) for t, topic in messages if start <= t < boundary]
        banks = [t for t, topic in sent if topic == bank_topic]
        cycles.append(
            Cycle(
                start=start,
                commands=[c for t, c in commands if start <= t < following],
                console_bytes=sum(c[2] for c in mine),
                wire=sum(c[2] for c in mine) * BITS_PER_BYTE / float(baud),
                end=max([t for t, _ in sent] + [max(c[1] for c in mine)]),
                messages=len(sent),
                bank_at=banks[0] if banks else None,
            )
        )
    return cycles


def broker_connections(broker: Mosquitto, since_line: int, client_id: Optional[str]) -> int:
    with open(os.path.join(broker.dir, "mosquitto.log")) as handle:
        lines = handle.readlines()[since_line:]
    return sum(1 for line in lines if "New client connected" in line and (client_id is None or " as %s " % client_id in line))


def broker_log_lines(broker: Mosquitto) -> int:
    try:
        with open(os.path.join(broker.dir, "mosquitto.log")) as handle:
            return sum(1 for _ in handle)
    except OSError:
        return 0


def run_case(
    baud: int,
    units: int,
    cells: int,
    duration: float,
    reading_freq: float,
    command: Optional[str],
    label: str,
    cycle_command: str = "pwr",
    link: Optional[str] = None,
    idle: bool = False,
    bank_topic: Optional[str] = TOPIC_BASE + "/pylon",
    firmware: str = "us2000c-b67",
) -> Run:
    """One program (the daemon, or ``command``) against a fresh broker and simulated bank, for ``duration``
    seconds of steady polling."""
    broker = Mosquitto().start()
    try:
        return _measure(
            broker, baud, units, cells, duration, reading_freq, command, label, cycle_command, link, idle, bank_topic, firmware
        )
    finally:
        broker.close()


def _measure(
    broker: Mosquitto,
    baud: int,
    units: int,
    cells: int,
    duration: float,
    reading_freq: float,
    command: Optional[str],
    label: str,
    cycle_command: str,
    link: Optional[str],
    idle: bool,
    bank_topic: Optional[str],
    firmware: str,
) -> Run:
    sim = PtySimulator(scenario(baud, units, cells, firmware), link=link)
    sim.start()
    wire = instrument(sim)
    tty = sim.device
    work = tempfile.mkdtemp(prefix="extra200-bench-")
    recorder = Recorder(broker.port, ("#",))
    log_start = broker_log_lines(broker)
    client_id = None
    if command is None:
        client_id = "bench-%s-%d-%d-%d" % (label, baud, units, cells)
        config = write_config(
            work,
            broker.port,
            TOPIC_BASE,
            mqtt={"client_id": client_id, "keepalive": 30},
            serial={"baud": baud, "reading_freq": reading_freq, "command_timeout": 10, "stale_after": 60},
            # the cell count is left to the console (auto); the baud is set, as after the first start remembers it
        )
        argv = [sys.executable, ENTRY, "--config", config, "--port", tty]
    else:
        argv = shlex.split(command.format(tty=tty, mqtt_host="127.0.0.1", mqtt_port=broker.port))
    run = Run(label, baud, units, cells, started=time.monotonic())
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=work)
    errors: List[str] = []
    threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True).start()
    sampler = Sampler(process.pid)
    sampler.start()
    try:
        first = recorder.wait_for(lambda t, p: True, 600)
        run.first_message = first[0] - run.started if first else None
        if bank_topic:
            bank = recorder.wait_for(lambda t, p: t == bank_topic, 600)
            run.first_bank = bank[0] - run.started if bank else None
        # steady state: the first polls read every unit's details, identity and cells (at 19200 baud and 16
        # units, for half a minute); the window starts once the console has heard nothing but the cycle
        # command for two polls' time
        settle_until_steady(wire, cycle_command if command is None else None, max(reading_freq, 3.0) * 2)
        window_start = time.monotonic()
        time.sleep(duration)
        window_end = time.monotonic()
        time.sleep(min(reading_freq, 5.0) + 1.0)  # let the last cycle in the window finish publishing
        run.peak_kb = peak_rss_kb(_descendants(process.pid))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            run.exit_status = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            run.exit_status = process.wait()
        sampler.stop()
        recorder.close()
        sim.stop()
    run.peak_kb = max(run.peak_kb, sampler.peak_kb)
    messages = [(m[0], m[1]) for m in recorder.messages if not m[3]]  # not the retained ones replayed on subscribing
    run.messages = len(messages)
    run.connections = broker_connections(broker, log_start, client_id)  # the recorder connected before log_start
    run.window = (window_start, window_end)
    run.cycles = [
        c
        for c in split_cycles(wire, messages, baud, cycle_command, bank_topic)
        if window_start <= c.start and c.end <= window_end
    ]
    if run.cycles:
        first_start, last_end = run.cycles[0].start, run.cycles[-1].end
        run.cpu_window = sampler.cpu_at(last_end) - sampler.cpu_at(first_start)
    if idle:
        all_cycles = split_cycles(wire, messages, baud, cycle_command, bank_topic)
        for before, after in zip(all_cycles, all_cycles[1:]):
            # from just after one cycle's last message to just before the next command
            begin, end = before.end + 0.1, after.start - 0.05
            if window_start <= begin < end <= window_end:
                run.idle_seconds += end - begin
                run.idle_cpu += sampler.cpu_at(end) - sampler.cpu_at(begin)
    if run.exit_status not in (0, None) and command is None:
        sys.stderr.write("%s: the daemon exited with %s:\n%s\n" % (label, run.exit_status, "".join(errors[-20:])))
    return run


# --------------------------------------------------------------------------- reporting


def summary(run: Run) -> Dict[str, Any]:
    steady = [c for c in run.cycles if set(c.commands) == {"pwr"}] or run.cycles
    walls = [c.wall for c in steady]
    banks = [c.bank_latency for c in steady if c.bank_latency is not None]
    limits = [c.limit for c in steady]
    ratios = [c.wall / c.limit for c in steady if c.limit > 0]
    n = len(steady)
    return {
        "label": run.label,
        "baud": run.baud,
        "units": run.units,
        "cells": run.cells,
        "cycles": len(run.cycles),
        "steady_cycles": n,
        "cycle_kind": steady[0].kind if steady else None,
        "console_bytes": round(statistics.mean(c.console_bytes for c in steady)) if n else None,
        "wall_ms": round(statistics.median(walls) * 1000, 1) if n else None,
        "wall_p95_ms": round(sorted(walls)[int(0.95 * (n - 1))] * 1000, 1) if n else None,
        "limit_ms": round(statistics.median(limits) * 1000, 1) if n else None,
        "bank_ms": round(statistics.median(banks) * 1000, 1) if banks else None,
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
        "ratio_max": round(max(ratios), 3) if ratios else None,
        "cpu_ms_per_cycle": round(run.cpu_window / len(run.cycles) * 1000, 1) if run.cycles else None,
        "idle_cpu_ms_per_s": round(run.idle_cpu / run.idle_seconds * 1000, 2) if run.idle_seconds else None,
        "idle_seconds": round(run.idle_seconds, 1),
        "peak_rss_mb": round(run.peak_kb / 1024.0, 1),
        "mqtt_connections": run.connections,
        "messages": run.messages,
        "messages_per_cycle": round(statistics.mean(c.messages for c in steady), 1) if n else None,
        "first_message_s": round(run.first_message, 2) if run.first_message is not None else None,
        "first_bank_s": round(run.first_bank, 2) if run.first_bank is not None else None,
        "exit_status": run.exit_status,
    }


COLUMNS = [
    ("label", "program"),
    ("baud", "baud"),
    ("units", "units"),
    ("cells", "cells"),
    ("steady_cycles", "cycles"),
    ("console_bytes", "bytes/cycle"),
    ("wall_ms", "wall ms"),
    ("wall_p95_ms", "p95 ms"),
    ("limit_ms", "wire+lat ms"),
    ("bank_ms", "bank msg ms"),
    ("ratio", "ratio"),
    ("ratio_max", "max ratio"),
    ("cpu_ms_per_cycle", "CPU ms/cycle"),
    ("peak_rss_mb", "peak RSS MB"),
    ("mqtt_connections", "MQTT conns"),
    ("messages_per_cycle", "msgs/cycle"),
    ("first_message_s", "1st msg s"),
    ("first_bank_s", "1st bank s"),
]


def markdown(rows: Sequence[Dict[str, Any]]) -> str:
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join("" if row.get(key) is None else str(row[key]) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join([head, rule] + body)


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d CPUs, Linux %s, Python %s" % (model, os.cpu_count() or 0, os.uname().release, sys.version.split()[0])


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer cases and shorter windows (about 3 minutes)")
    parser.add_argument("--duration", type=float, help="seconds of steady polling measured per case (default 20)")
    parser.add_argument("--bauds", default="115200,19200")
    parser.add_argument("--units", help="bank sizes (default 1,4,8,16)")
    parser.add_argument("--cells", help="cells per unit (default 15,16)")
    parser.add_argument(
        "--reading-freq",
        type=float,
        default=1.2,
        help="serial.reading_freq of the daemon (default 1.2): polls as close as they can be while each still publishes "
        "its bank message (a Victron topic carries at most one a second), by which the polls are told apart",
    )
    parser.add_argument(
        "--idle-freq", type=float, default=5.0, help="serial.reading_freq of the idle run (the shipped default, 5 s)"
    )
    parser.add_argument(
        "--compare", metavar="CMD", help="also run CMD against the same simulated console ({tty}, {mqtt_host}, {mqtt_port})"
    )
    parser.add_argument(
        "--compare-cycle-command", default="pwr", help="the command that starts a poll cycle of CMD (default pwr)"
    )
    parser.add_argument("--compare-bank-topic", metavar="TOPIC", help="CMD's bank topic, for its time to the first bank message")
    parser.add_argument(
        "--firmware",
        default="us2000c-b67",
        help="the simulated console's firmware preset (extra2000: no pwr table, asleep, login)",
    )
    parser.add_argument("--link", help="a fixed symlink to the simulated console, for CMD ({tty} becomes it)")
    parser.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    args = parser.parse_args(argv)

    duration = args.duration or (8.0 if args.quick else 20.0)
    units = [int(u) for u in (args.units or ("1,16" if args.quick else "1,4,8,16")).split(",")]
    cells = [int(c) for c in (args.cells or ("15" if args.quick else "15,16")).split(",")]
    bauds = [int(b) for b in args.bauds.split(",")]
    rows: List[Dict[str, Any]] = []
    for baud in bauds:
        for count in units:
            for cell_count in cells:
                programs: List[Tuple[str, Optional[str]]] = [("extra200tomqtt", None)]
                if args.compare:
                    programs.append(("compared", args.compare))
                for label, command in programs:
                    sys.stderr.write("%s: %d baud, %d units, %d cells ...\n" % (label, baud, count, cell_count))
                    compared = command is not None
                    own_cycle = "pwr 1" if args.firmware == "extra2000" else "pwr"  # no pwr table: pwr N per unit
                    run = run_case(
                        baud,
                        count,
                        cell_count,
                        duration,
                        args.reading_freq,
                        command,
                        label,
                        args.compare_cycle_command if compared else own_cycle,
                        link=args.link if compared else None,
                        bank_topic=args.compare_bank_topic if compared else TOPIC_BASE + "/pylon",
                        firmware=args.firmware,
                    )
                    rows.append(summary(run))
                    sys.stderr.write("  %s\n" % json.dumps(rows[-1]))
    sys.stderr.write("idle run: 115200 baud, 4 units, reading_freq %.0f s ...\n" % args.idle_freq)
    idle = run_case(115200, 4, 15, 15.0 if args.quick else 40.0, args.idle_freq, None, "idle", idle=True)
    idle_row = summary(idle)
    sys.stderr.write("  %s\n" % json.dumps(idle_row))

    print("Machine: %s" % machine())
    print(
        "Steady cycles: `pwr` only (cells every %s s by default); reading_freq %.1f s; %.0f s per case.\n"
        % ("60", args.reading_freq, duration)
    )
    print(markdown(rows))
    print(
        "\nIdle between polls (reading_freq %.0f s, %.0f s idle measured): %s ms CPU per second; "
        "CPU tick %d ms." % (args.idle_freq, idle_row["idle_seconds"], idle_row["idle_cpu_ms_per_s"], 1000 // CLOCK_TICK)
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"machine": machine(), "duration": duration, "reading_freq": args.reading_freq, "cases": rows, "idle": idle_row},
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
