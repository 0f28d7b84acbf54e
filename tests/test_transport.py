"""The console transport over a real pseudo-terminal.

A small scripted battery runs on the master side of ``os.openpty()``: it
answers line by line at a paced rate, reads the client's baud rate from the
slave's termios to recognise the 1200-baud wake-up frame, pages long replies
and can be told to stay silent, cut a reply short, send garbage or vanish.
"""

import errno
import logging
import os
import select
import termios
import threading
import time
import tty
from typing import Callable, Dict, Iterator, List

import pytest
import serial

from extra200.framing import PAGE_PROMPT
from extra200.transport import (
    WAKE_FRAME,
    Console,
    ConsoleError,
    ConsoleGarbled,
    ConsoleSilent,
    ConsoleTimeout,
    PortLost,
    PortUnavailable,
)

ERASE = b"\r\r" + b" " * 50 + b"\r\r\r\n"
PWR_ROWS = [
    b"Power Volt   Curr   Tempr  Base.St  Coulomb",
    b"1     51880  1520   25000  Charge   64%",
    b"2     51874  1498   24000  Charge   63%",
]


class FakeBattery:
    """A scripted console on the master side of a pseudo-terminal."""

    def __init__(self, asleep: bool = False, prompt: str = "pylon>") -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.asleep = asleep
        self.prompt = prompt.encode()
        self.wake_works = True
        self.script: Dict[str, List[Callable[["FakeBattery", str], None]]] = {}
        self.commands: List[str] = []  # every non-empty line received while awake
        self.frames: List[int] = []  # termios speed at which each wake frame arrived
        self.line_ends = 0
        self._line = b""
        self._pages: List[bytes] = []  # pages waiting for Enter
        self._page_end = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._closed = False

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> "FakeBattery":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        if not self._closed:
            os.close(self.master)
            self._closed = True
        os.close(self.slave)

    def vanish(self) -> None:
        """Like pulling the USB adapter: the master side goes away."""
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        self._closed = True

    # -- output -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Write at a paced rate, in small chunks, as a UART would deliver them."""
        for start in range(0, len(data), 48):
            os.write(self.master, data[start : start + 48])
            time.sleep(0.0005)

    def reply(self, command: str, lines: List[bytes], ok: bool = True, table: bool = True) -> None:
        ending = b"\r\r\n" if table else b"\r\n\r"
        out = command.encode() + b"\n\r@" + ending + ending.join(lines)
        if ok:
            out += b"\r\n\rCommand completed successfully"
        self.send(out + b"\r\n\r$$\r\n\r" + self.prompt)

    def paged_reply(self, command: str, pages: List[List[bytes]]) -> None:
        blocks = [b"\r\n\r".join(page) for page in pages]
        self._pages = blocks[1:]
        self._page_end = b"\r\n\rCommand completed successfully\r\n\r$$\r\n\r" + self.prompt
        self.send(command.encode() + b"\n\r@\r\n\r" + blocks[0] + b"\n\r" + PAGE_PROMPT)

    # -- input --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 1024)
            except OSError:
                return
            for value in data:
                self._byte(bytes([value]))

    def _byte(self, byte: bytes) -> None:
        if self._pages:
            if byte == b"\r":
                page = self._pages.pop(0)
                tail = (b"\n\r" + PAGE_PROMPT) if self._pages else self._page_end
                self.send(ERASE + b"\r" + page + tail)
            else:  # any other key ends the listing
                self._pages = []
                self.send(b"\r\n\r$$\r\n\r" + self.prompt)
            return
        if byte in (b"\r", b"\n"):
            line, self._line = self._line, b""
            self._handle(line, termios.tcgetattr(self.slave)[5])
        else:
            self._line += byte

    def _handle(self, line: bytes, speed: int) -> None:
        if line.startswith(b"~"):
            self.frames.append(speed)
            if speed == termios.B1200 and self.wake_works:
                self.asleep = False
            return
        if self.asleep or speed != termios.B115200:
            return
        if not line:
            self.line_ends += 1
            self.send(b"\n\r" + self.prompt)
            return
        command = line.decode("ascii", "replace").strip()
        self.commands.append(command)
        if command == "login debug":
            self.prompt = b"pylon_debug>"
            self.reply(command, [b"Login success"], table=False)
            return
        actions = self.script.get(command)
        if actions:
            action = actions.pop(0) if len(actions) > 1 else actions[0]
            action(self, command)
            return
        self.send(command.encode() + b"\n\r@\r\n\rUnknown command '%s' - try 'help'\r\n\r$$\r\n\r" % line + self.prompt)


def pwr_reply(battery: FakeBattery, command: str) -> None:
    battery.reply(command, PWR_ROWS)


@pytest.fixture
def battery() -> Iterator[FakeBattery]:
    fake = FakeBattery().start()
    fake.script["pwr"] = [pwr_reply]
    yield fake
    fake.stop()


@pytest.fixture
def asleep() -> Iterator[FakeBattery]:
    fake = FakeBattery(asleep=True).start()
    fake.script["pwr"] = [pwr_reply]
    yield fake
    fake.stop()


def console_for(fake: FakeBattery, probe_wait: float = 1.0, **options: object) -> Console:
    """An open console on the fake; short probes only where silence is expected."""
    console = Console(fake.path, **options)  # type: ignore[arg-type]
    console.probe_wait = probe_wait
    console.open()
    return console


# --- commands --------------------------------------------------------------------


def test_prompt_check_and_command(battery: FakeBattery) -> None:
    console = console_for(battery)
    try:
        console.wake()
        assert battery.frames == []
        reply = console.command("pwr")
    finally:
        console.close()
    assert reply.ok and reply.error is None
    assert reply.lines == tuple(row.decode() for row in PWR_ROWS)
    assert reply.prompt == "pylon>"
    assert battery.commands == ["pwr"]
    assert console.bytes_out >= len(b"pwr\r") + 2
    assert console.bytes_in >= len(reply.raw)
    assert console.last_round_trip is not None and console.last_round_trip > 0
    assert not console.is_open


def test_constructor_does_no_io() -> None:
    console = Console("/dev/nonexistent-extra200-port", command_timeout=2.0)
    assert not console.is_open
    with pytest.raises(ConsoleError, match="not open"):
        console.command("pwr")
    with pytest.raises(ValueError):
        Console("/dev/null", wakeup="sometimes")


def test_rejected_command_is_a_reply_not_an_exception(battery: FakeBattery) -> None:
    with console_for(battery) as console:
        reply = console.command("soh 1")
    assert not reply.ok
    assert reply.error == "Unknown command 'soh 1' - try 'help'"


def test_paging_is_answered_with_enter(battery: FakeBattery) -> None:
    pages = [[b" Index   : %d" % index, b" Info    : The device start charging."] for index in (3, 2, 1)]
    battery.script["log"] = [lambda fake, command: fake.paged_reply(command, pages)]
    with console_for(battery) as console:
        reply = console.command("log")
        after = console.command("pwr")
    assert reply.ok
    assert reply.lines == tuple(line.decode() for page in pages for line in page)
    assert after.ok and battery.commands == ["log", "pwr"]


def test_garbage_before_the_echo_is_skipped(battery: FakeBattery) -> None:
    def noisy(fake: FakeBattery, command: str) -> None:
        fake.send(b"\x00\xfe\x13?\r\n  0  Normal\r\n\rCommand completed successfully\r\n\r$$\r\n\rpylon>\n\rpylon>")
        fake.reply(command, PWR_ROWS)

    battery.script["pwr"] = [noisy]
    with console_for(battery) as console:
        reply = console.command("pwr")
    assert reply.ok
    assert reply.lines == tuple(row.decode() for row in PWR_ROWS)


def test_timeout_mid_reply_then_resync_and_next_command(battery: FakeBattery, caplog: pytest.LogCaptureFixture) -> None:
    def cut(fake: FakeBattery, command: str) -> None:
        fake.send(command.encode() + b"\n\r@\r\r\n" + PWR_ROWS[0] + b"\r\r\n1     518")

    battery.script["pwr"] = [cut, pwr_reply]
    with console_for(battery) as console:
        with caplog.at_level(logging.DEBUG, logger="extra200.transport"):
            with pytest.raises(ConsoleTimeout) as raised:
                console.command("pwr", timeout=0.8)
        reply = console.command("pwr")
    message = str(raised.value)
    assert battery.path in message and "'pwr'" in message and "cut short" in message
    assert raised.value.raw.startswith(b"pwr\n\r@")
    assert battery.line_ends >= 1  # the resync asked for a prompt
    assert reply.ok and reply.lines[1].startswith("1     51880")
    # said once, at DEBUG: the poller and the daemon report faults to the user, once per episode
    cut_short = [record for record in caplog.records if "cut short" in record.getMessage()]
    assert len(cut_short) == 1 and cut_short[0].levelno == logging.DEBUG
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_no_answer_is_a_timeout(asleep: FakeBattery) -> None:
    with console_for(asleep, probe_wait=0.4) as console:
        with pytest.raises(ConsoleTimeout, match="no answer"):
            console.command("pwr", timeout=0.5)


def test_garbage_only_is_reported_as_garbled(battery: FakeBattery) -> None:
    battery.script["pwr"] = [lambda fake, command: fake.send(bytes(range(128, 256)) * 3)]
    with console_for(battery) as console:
        with pytest.raises(ConsoleGarbled, match="baud rate mismatch") as raised:
            console.command("pwr", timeout=1.5)
    assert "wrong port" in str(raised.value) and "RS232" in str(raised.value)


def test_corrupted_reply_is_garbled_then_next_command_works(battery: FakeBattery) -> None:
    def corrupted(fake: FakeBattery, command: str) -> None:
        fake.reply(command, [PWR_ROWS[0], b"1     51880  15\x0020   25000  Charge   64%"])

    battery.script["pwr"] = [corrupted, pwr_reply]
    with console_for(battery) as console:
        with pytest.raises(ConsoleGarbled, match="non-text"):
            console.command("pwr")
        assert console.command("pwr").ok


def test_device_that_vanishes(battery: FakeBattery) -> None:
    console = console_for(battery)
    assert console.command("pwr").ok
    battery.vanish()
    with pytest.raises(PortLost) as raised:
        console.command("pwr")
    assert isinstance(raised.value, ConsoleError)
    assert battery.path in str(raised.value)
    assert not console.is_open
    with pytest.raises(ConsoleError, match="not open"):
        console.command("pwr")
    console.close()


# --- opening ---------------------------------------------------------------------


def test_missing_port_names_the_path() -> None:
    path = "/dev/ttyUSB-extra200-missing"
    console = Console(path)
    with pytest.raises(PortUnavailable) as raised:
        console.open()
    assert path in str(raised.value)
    assert "no such device" in str(raised.value)
    assert not console.is_open


def test_second_client_is_refused_as_busy(battery: FakeBattery) -> None:
    with console_for(battery):
        with pytest.raises(PortUnavailable, match="busy"):
            Console(battery.path).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_denied_hints_at_dialout(tmp_path: "os.PathLike[str]") -> None:
    path = os.path.join(str(tmp_path), "ttyLOCKED")
    with open(path, "w"):
        pass
    os.chmod(path, 0)
    with pytest.raises(PortUnavailable, match="dialout"):
        Console(path).open()


def test_open_failure_reasons() -> None:
    from extra200.transport import _open_failure_reason

    denied = serial.SerialException(errno.EACCES, "could not open port /dev/ttyUSB0: Permission denied")
    assert "dialout" in _open_failure_reason(denied)
    assert "busy" in _open_failure_reason(serial.SerialException(errno.EBUSY, "busy"))


def test_unknown_url_scheme() -> None:
    with pytest.raises(PortUnavailable, match="nosuchscheme"):
        Console("nosuchscheme://x").open()


# --- wake-up and login -------------------------------------------------------------


def test_no_wake_frame_when_the_prompt_answers(battery: FakeBattery) -> None:
    with console_for(battery, wakeup="auto") as console:
        console.wake()
    assert battery.frames == []
    assert battery.line_ends >= 1


def test_wake_up_when_silent(asleep: FakeBattery) -> None:
    with console_for(asleep, probe_wait=0.4, wakeup="auto") as console:
        console.wake()
        assert asleep.frames == [termios.B1200]
        # back at the console rate for the commands
        assert termios.tcgetattr(asleep.slave)[5] == termios.B115200
        assert console.command("pwr").ok
        assert console.bytes_out >= len(WAKE_FRAME)


def test_wake_up_always_sends_the_frame(battery: FakeBattery) -> None:
    with console_for(battery, wakeup="always") as console:
        console.wake()
        assert console.command("pwr").ok
    assert battery.frames == [termios.B1200]


def test_wake_up_never_raises_silent(asleep: FakeBattery) -> None:
    with console_for(asleep, probe_wait=0.4, wakeup="never") as console:
        with pytest.raises(ConsoleSilent) as raised:
            console.wake()
    assert asleep.frames == []
    assert asleep.path in str(raised.value)


def test_silent_even_after_the_frame(asleep: FakeBattery) -> None:
    asleep.wake_works = False
    with console_for(asleep, probe_wait=0.4) as console:
        console.probes_before_wake = 1
        console.probes_after_wake = 2
        with pytest.raises(ConsoleSilent, match="even after the wake-up frame"):
            console.wake()
    assert asleep.frames == [termios.B1200]


def test_login_debug_after_wake(asleep: FakeBattery) -> None:
    with console_for(asleep, probe_wait=0.4, login_debug=True) as console:
        console.wake()
        reply = console.command("pwr")
    assert asleep.commands == ["login debug", "pwr"]
    assert reply.prompt == "pylon_debug>"


def test_no_login_when_already_in_debug_mode() -> None:
    fake = FakeBattery(prompt="pylon_debug>").start()
    try:
        with console_for(fake, login_debug=True) as console:
            console.wake()
    finally:
        fake.stop()
    assert fake.commands == []


def test_power_loss_brings_wake_up_and_login_again(battery: FakeBattery) -> None:
    with console_for(battery, login_debug=True) as console:
        console.wake()
        assert console.command("pwr").prompt == "pylon_debug>"
        # The battery loses power: silent until woken, then back in user mode.
        console.probe_wait = 0.4
        battery.asleep = True
        battery.prompt = b"pylon>"
        with pytest.raises(ConsoleTimeout):
            console.command("pwr", timeout=0.5)
        console.wake()
        assert console.command("pwr").prompt == "pylon_debug>"
    assert battery.frames == [termios.B1200]
    assert battery.commands == ["login debug", "pwr", "login debug", "pwr"]


def test_user_mode_prompt_triggers_login_before_next_command(battery: FakeBattery) -> None:
    with console_for(battery, login_debug=True) as console:
        console.wake()
        battery.prompt = b"pylon>"  # e.g. another client logged out
        assert console.command("pwr").prompt == "pylon>"
        assert console.command("pwr").prompt == "pylon_debug>"
    assert battery.commands == ["login debug", "pwr", "login debug", "pwr"]


# --- through the simulator ---------------------------------------------------------


def test_through_the_simulator_url() -> None:
    with Console("pylonsim://") as console:
        console.wake()
        reply = console.command("pwr")
        again = console.command("pwr")
    assert reply.ok and again.ok
    assert reply.lines[0].split()[:3] == ["Power", "Volt", "Curr"]
    assert reply.prompt == "pylon>"


def test_simulator_asleep_is_woken_at_1200_baud() -> None:
    with Console("pylonsim://?asleep=1") as console:
        console.probe_wait = 0.4
        console.wake()
        assert console.command("pwr").ok


def test_simulator_at_the_wrong_baud_is_reported_as_garbage() -> None:
    with Console("pylonsim://", baud=9600) as console:
        console.probe_wait = 0.4
        console.probes_before_wake = 1
        console.probes_after_wake = 1
        with pytest.raises(ConsoleSilent, match="garbage: likely a baud rate mismatch"):
            console.wake()


# --- serial.baud: auto, over a real pseudo-terminal (the simulator reads the client's termios baud) ---------


@pytest.fixture
def pty_console() -> Iterator[Callable[..., "object"]]:
    """A simulated console on a pseudo-terminal: ``make(scenario, **overrides)`` -> the running PtySimulator."""
    from extra200.simulator import PtySimulator

    started: List[PtySimulator] = []

    def make(scenario: str = "us2000c-3", **overrides: object) -> PtySimulator:
        sim = PtySimulator(scenario, drift=False, **overrides)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def quick(console: Console) -> Console:
    """Shorter probes: the simulator answers a line end within milliseconds."""
    console.probe_wait = 0.4
    return console


def test_auto_baud_finds_an_awake_console_at_19200(pty_console: Callable[..., object], caplog: pytest.LogCaptureFixture) -> None:
    sim = pty_console(console_baud=19200)
    caplog.set_level(logging.INFO, logger="extra200.transport")
    with quick(Console(sim.path, baud="auto")) as console:  # type: ignore[attr-defined]
        assert console.baud == 115200  # opened at the first candidate
        console.wake()
        assert console.baud == 19200
        assert console.command("pwr").ok
    assert "the console answers at 19200 baud" in caplog.text
    assert "wake-up frame" not in caplog.text  # it was awake: found before any wake-up frame


def test_auto_baud_and_login_wake_an_extra2000(pty_console: Callable[..., object]) -> None:
    """Asleep at 19200 and refusing data commands in user mode: found, woken, logged in, without settings."""
    sim = pty_console("extra2000")
    with quick(Console(sim.path, baud="auto", login_debug="auto")) as console:  # type: ignore[attr-defined]
        console.wake()
        assert console.baud == 19200
        reply = console.command("pwr 1")
        assert reply.ok and reply.prompt == "pylon_debug>"
        assert console.command("bat 1").ok


def test_login_auto_leaves_a_console_that_needs_none_in_user_mode(pty_console: Callable[..., object]) -> None:
    sim = pty_console()
    with quick(Console(sim.path, baud="auto", login_debug="auto")) as console:  # type: ignore[attr-defined]
        console.wake()
        assert console.command("pwr").prompt == "pylon>"
        unknown = console.command("soh")  # an unknown non-data command is not a reason to log in
        assert not unknown.ok and unknown.prompt == "pylon>"


def test_the_preferred_baud_is_tried_first(pty_console: Callable[..., object], caplog: pytest.LogCaptureFixture) -> None:
    sim = pty_console(console_baud=9600)
    caplog.set_level(logging.DEBUG, logger="extra200.transport")
    console = quick(Console(sim.path, baud="auto"))
    console.prefer_baud(9600)
    with console:
        console.wake()
        assert console.baud == 9600
    assert "trying" not in caplog.text  # found at once: no other baud was tried


def test_auto_baud_with_no_console_names_every_baud_tried(pty_console: Callable[..., object]) -> None:
    sim = pty_console()
    sim.bank.set_silent(True)  # type: ignore[attr-defined]
    with quick(Console(sim.path, baud="auto", wakeup="never")) as console:  # type: ignore[attr-defined]
        console.probes_before_wake = 1
        with pytest.raises(ConsoleSilent) as caught:
            console.wake()
        assert console.baud == 115200  # back at the first one tried
    assert "115200, 19200, 9600, 57600, 38400" in str(caught.value)


def test_a_configured_baud_that_gets_garbage_names_bauds_worth_trying(pty_console: Callable[..., object]) -> None:
    sim = pty_console(console_baud=19200)
    with quick(Console(sim.path, baud=115200)) as console:  # type: ignore[attr-defined]
        console.probes_before_wake = 1
        console.probes_after_wake = 1
        with pytest.raises(ConsoleSilent) as caught:
            console.wake()
        assert console.baud == 115200  # a configured baud is used as it is
    message = str(caught.value)
    assert "baud rate mismatch" in message and "19200, 9600, 57600, 38400" in message and "auto" in message


def test_auto_baud_detects_again_after_the_console_restarts_at_another_baud(pty_console: Callable[..., object]) -> None:
    sim = pty_console()
    with quick(Console(sim.path, baud="auto")) as console:  # type: ignore[attr-defined]
        console.wake()
        assert console.baud == 115200 and console.command("pwr").ok
        sim.console.restart_at(38400)  # type: ignore[attr-defined]
        with pytest.raises(ConsoleError):
            console.command("pwr", timeout=1.0)
        console.wake()  # what the daemon does after failed polls
        assert console.baud == 38400
        assert console.command("pwr").ok


# --- a reply returned before its end (command(enough=...)) -----------------------------


def _slow_pwr(rest_sent: threading.Event, send_rest: bool = True) -> Callable[[FakeBattery, str], None]:
    """The header and unit 1 at once, unit 2 and the end of the reply half a second later (or never).
    (Unit 2's first byte comes with unit 1: a line counts once the byte after its line end is in.)"""

    def reply(fake: FakeBattery, command: str) -> None:
        fake.send(command.encode() + b"\n\r@\r\r\n" + PWR_ROWS[0] + b"\r\r\n" + PWR_ROWS[1] + b"\r\r\n" + PWR_ROWS[2][:1])
        if not send_rest:
            return
        time.sleep(0.5)
        fake.send(PWR_ROWS[2][1:] + b"\r\n\rCommand completed successfully\r\n\r$$\r\n\r" + fake.prompt)
        rest_sent.set()

    return reply


def _has_unit_1(lines: "List[str]") -> bool:
    return any(line.startswith("1 ") for line in lines)


def test_a_reply_returned_early_is_read_to_its_end_before_the_next_command(battery: FakeBattery) -> None:
    rest_sent = threading.Event()
    battery.script["pwr"] = [_slow_pwr(rest_sent), pwr_reply]
    seen: List[List[str]] = []
    with console_for(battery) as console:
        early = console.command("pwr", enough=lambda lines: seen.append(list(lines)) or _has_unit_1(lines))
        returned_before_the_rest = not rest_sent.is_set()
        after = console.command("pwr")
    assert returned_before_the_rest
    assert early.partial and not early.ok and early.error is None
    assert early.lines == (PWR_ROWS[0].decode(), PWR_ROWS[1].decode())
    # asked whenever more whole lines are in, never twice with the same lines
    assert seen[-1] == [PWR_ROWS[0].decode(), PWR_ROWS[1].decode()]
    assert [len(lines) for lines in seen] == sorted(set(len(lines) for lines in seen))
    # the second command got its own reply, not the first one's rest
    assert after.ok and not after.partial and after.lines == tuple(row.decode() for row in PWR_ROWS)
    assert battery.commands == ["pwr", "pwr"]


def test_finish_reads_the_rest_of_a_reply_returned_early(battery: FakeBattery) -> None:
    rest_sent = threading.Event()
    battery.script["pwr"] = [_slow_pwr(rest_sent)]
    with console_for(battery) as console:
        assert console.command("pwr", enough=_has_unit_1).partial
        console.finish()
        assert rest_sent.is_set()
        port = console._port
        assert port is not None and port.in_waiting == 0  # up to and including the prompt
        console.finish()  # nothing left: no exchange, no wait
        assert battery.commands == ["pwr"] and battery.line_ends == 0


def test_a_rest_that_never_comes_costs_a_resync_not_the_next_command(
    battery: FakeBattery, caplog: pytest.LogCaptureFixture
) -> None:
    battery.script["pwr"] = [_slow_pwr(threading.Event(), send_rest=False), pwr_reply]
    with console_for(battery, command_timeout=0.8) as console:
        assert console.command("pwr", enough=_has_unit_1).partial
        with caplog.at_level(logging.DEBUG, logger="extra200.transport"):
            after = console.command("pwr")
    assert after.ok and after.lines == tuple(row.decode() for row in PWR_ROWS)
    assert battery.line_ends >= 1  # resynchronised
    assert any("the rest of 'pwr' did not arrive whole" in r.getMessage() for r in caplog.records)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_reply_that_never_satisfies_enough_is_returned_whole(battery: FakeBattery) -> None:
    with console_for(battery) as console:
        reply = console.command("pwr", enough=lambda lines: False)
    assert reply.ok and not reply.partial and reply.lines == tuple(row.decode() for row in PWR_ROWS)
