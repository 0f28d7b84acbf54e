"""The simulated console: bytes in at the client's baud, paced bytes out, the way the battery's shell behaves.

``Console.receive`` takes what the client sent, at the baud the client's port
is set to, and schedules the console's answer on an ``OutputLine``: every
byte becomes readable only once it has crossed the wire at the console's baud
(10 bits per byte), after a small response latency.  Nothing here sleeps or
spins; readers wait on the line's condition variable until the next byte is
due.

Behaviour (``docs/console-protocol.md`` §3-§7):

* typed characters are echoed; a line end (``\\r`` or ``\\n``) runs the line:
  ``\\n``, then ``\\r@`` + payload + completion + ``$$`` + prompt; an empty line
  only gets a new prompt;
* bytes sent at a baud other than the console's are not understood (they come
  back as garbage), and whatever the console sends reaches such a client as
  garbage too;
* an asleep console ignores everything until the wake-up frame arrives at
  1200 baud, then answers in user mode;
* long replies pause at the pager line; ``\\r`` or ``\\n`` continues, any other
  key aborts;
* the bank's fault flags add silence, wrong or lost bytes, and cut replies.
"""

import dataclasses
import logging
import math
import random
import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional, Sequence, Tuple

from .bank import Bank, UnitSnapshot
from .render import (
    ERROR_TAIL,
    KV_HEAD,
    PAGER,
    PAGER_ERASE,
    Reply,
    bat_table,
    done,
    help_lines,
    info_lines,
    invalid_command,
    kv_reply,
    log_lines,
    pwr_detail,
    pwr_table,
    stat_rows,
    success_tail,
    table_reply,
    unknown_command,
    usage,
)
from .replay import ReplayDirectory
from .scenario import Scenario

logger = logging.getLogger(__name__)

WAKE_FRAME = b"~20014682C0048520FCC3\r"
WAKE_BAUD = 1200
BITS_PER_BYTE = 10  # start + 8 data + stop
LINE_ENDS = (0x0D, 0x0A)
ERASE_KEYS = (0x08, 0x7F)
MAX_LINE = 256


class OutputLine:
    """Bytes travelling from the console to the client; each is readable once fully on the wire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.cond = threading.Condition()
        # chunks of [data, start time, seconds per byte, bytes already taken]
        self._chunks: Deque[List] = deque()
        self._free_at = 0.0

    def send(self, data: bytes, earliest: float, seconds_per_byte: float) -> float:
        """Queue ``data`` to start no earlier than ``earliest``; returns when its last byte arrives."""
        with self.cond:
            start = max(earliest, self._free_at)
            if data:
                self._chunks.append([bytes(data), start, seconds_per_byte, 0])
                self._free_at = start + len(data) * seconds_per_byte
            self.cond.notify_all()
            return max(start, self._free_at)

    @staticmethod
    def _arrived(chunk: List, now: float) -> int:
        data, start, spb, _ = chunk
        if now < start + spb:
            return 0
        return min(len(data), int(math.floor((now - start) / spb + 1e-9)))

    def available(self, now: Optional[float] = None) -> int:
        now = self.clock() if now is None else now
        with self.cond:
            total = 0
            for chunk in self._chunks:
                arrived = self._arrived(chunk, now)
                total += arrived - chunk[3]
                if arrived < len(chunk[0]):
                    break
            return total

    def take(self, limit: int, now: Optional[float] = None) -> bytes:
        """Up to ``limit`` bytes that have arrived by ``now`` (-1: all of them)."""
        now = self.clock() if now is None else now
        out = bytearray()
        with self.cond:
            while self._chunks and (limit < 0 or len(out) < limit):
                chunk = self._chunks[0]
                arrived = self._arrived(chunk, now)
                end = arrived if limit < 0 else min(arrived, chunk[3] + limit - len(out))
                out += chunk[0][chunk[3] : end]
                chunk[3] = end
                if chunk[3] < len(chunk[0]):
                    break
                self._chunks.popleft()
        return bytes(out)

    def next_arrival(self, now: Optional[float] = None) -> Optional[float]:
        """When the next not yet readable byte arrives, or None when nothing is on its way."""
        now = self.clock() if now is None else now
        with self.cond:
            for chunk in self._chunks:
                arrived = self._arrived(chunk, now)
                if arrived < len(chunk[0]):
                    return chunk[1] + (arrived + 1) * chunk[2]
            return None

    def discard_arrived(self) -> None:
        self.take(-1)

    def clear(self) -> None:
        """Drop everything, also what is still on its way (the device vanished)."""
        with self.cond:
            self._chunks.clear()
            self._free_at = 0.0
            self.cond.notify_all()

    def wake_waiters(self) -> None:
        with self.cond:
            self.cond.notify_all()


class _Paged:
    """A reply stopped at the pager, waiting for a key."""

    def __init__(self, lines: Sequence[bytes], tail: bytes, page: int) -> None:
        self.lines = list(lines)
        self.tail = tail
        self.page = page


def junk_length(count: int, from_baud: int, to_baud: int) -> int:
    """How many wrong bytes ``count`` bytes sent at ``from_baud`` make at a receiver set to ``to_baud``."""
    if from_baud <= to_baud:
        return count  # each slow frame breaks into roughly one bad byte
    return max(1, count * to_baud // from_baud)  # fast frames smear into fewer slow ones


class Console:
    """The battery's shell; thread-safe.  ``bank`` holds the values and the battery-side flags."""

    def __init__(
        self,
        scenario: Scenario,
        bank: Optional[Bank] = None,
        replay: Optional[ReplayDirectory] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scenario = scenario
        self.firmware = scenario.firmware
        self.bank = bank if bank is not None else Bank(scenario, clock=clock)
        self.replay = replay
        self.clock = clock
        self.output = OutputLine(clock)
        self._lock = threading.RLock()
        self._rng = random.Random(scenario.seed)
        self._line = bytearray()
        self._wake = bytearray()
        self._paged: Optional[_Paged] = None
        self._cut_left: Optional[int] = None  # bytes the current reply may still send
        self._input_free = 0.0
        self._edits: List[Tuple[str, Callable[[bytes], bytes]]] = []  # (command, rewrite) for coming replies
        self._replies_until_silent: Optional[int] = None
        self._baud = scenario.console_baud

    @property
    def baud(self) -> int:
        return self._baud

    def restart_at(self, baud: int) -> None:
        """The console comes back at another baud (a reboot after a firmware or setting change)."""
        with self._lock:
            self._baud = baud
            self._line.clear()
            self._paged = None

    def input_free_at(self) -> float:
        """When the last byte the client sent has reached the console."""
        with self._lock:
            return self._input_free

    def prompt(self) -> bytes:
        debug = self.bank.console_flags().debug
        return (self.scenario.debug_prompt if debug else self.scenario.prompt).encode("latin-1")

    # ------------------------------------------------------------- input side

    def receive(self, data: bytes, baud: int, now: Optional[float] = None) -> float:
        """Bytes the client sent at ``baud``; returns when the last of them has reached the console."""
        now = self.clock() if now is None else now
        with self._lock:
            # an unknown client baud (0) is a wrong one; time it at the console's
            spb = BITS_PER_BYTE / float(baud if baud > 0 else self.baud)
            start = max(now, self._input_free)
            self._input_free = start + len(data) * spb
            flags = self.bank.console_flags()
            if flags.silent or not data:
                return self._input_free
            if flags.asleep:
                self._listen_asleep(data, baud)
                return self._input_free
            if baud != self.baud:
                self._wake.clear()
                # not understood: the shell echoes what it thinks it heard, which is garbage either way
                self._transmit(b"\x00" * junk_length(len(data), baud, self.baud), self._input_free, baud, reply=False)
                return self._input_free
            for i, byte in enumerate(bytearray(data)):
                self._key(byte, start + (i + 1) * spb, baud)
            return self._input_free

    def _listen_asleep(self, data: bytes, baud: int) -> None:
        if baud != WAKE_BAUD:
            self._wake.clear()
            return
        self._wake += data
        if WAKE_FRAME in self._wake:
            logger.info("simulated console woken by the 1200-baud frame")
            self._wake.clear()
            self._line.clear()
            self._paged = None
            self.bank.wake()
        else:
            del self._wake[: max(0, len(self._wake) - len(WAKE_FRAME))]

    def _key(self, byte: int, at: float, baud: int) -> None:
        if self._paged is not None:
            self._page_key(byte, at, baud)
            return
        if byte in LINE_ENDS:
            line = bytes(self._line)
            self._line.clear()
            self._run(line, at, baud)
        elif byte in ERASE_KEYS:
            if self._line:
                self._line.pop()
                if self.replay is None:
                    self._transmit(b"\b \b", at, baud, reply=False)
        elif len(self._line) < MAX_LINE:
            self._line.append(byte)
            if self.replay is None:
                self._transmit(bytes((byte,)), at, baud, reply=False)

    # ----------------------------------------------------------- running lines

    def _run(self, line: bytes, at: float, baud: int) -> None:
        text = line.decode("latin-1")
        words = text.split()
        respond_at = at + self.scenario.latency
        if self.replay is not None:
            self._run_replay(line, text, words, at, respond_at, baud)
            return
        self._transmit(b"\n", at, baud, reply=False)
        if not words:
            self._transmit(b"\r" + self.prompt(), respond_at, baud, reply=False)
            return
        reply = self._edited(" ".join(words), self.command(words))
        self._start_reply(reply, respond_at, baud)

    def edit_replies(self, command: str, edit: Callable[[bytes], bytes], replies: int = 1) -> None:
        """Damage on purpose: ``edit`` rewrites the payload of the next ``replies`` replies to ``command``
        (for example one digit changed, as line noise or a faulty BMS would), framing left intact."""
        with self._lock:
            self._edits.extend([(command, edit)] * replies)

    def silence_after(self, replies: int) -> None:
        """The console falls silent (``bank.set_silent``) once it has sent ``replies`` more replies:
        for a console that dies between two commands of one poll."""
        with self._lock:
            self._replies_until_silent = replies

    def pending_edits(self) -> int:
        with self._lock:
            return len(self._edits)

    def _edited(self, command: str, reply: Reply) -> Reply:
        with self._lock:
            for i, (wanted, edit) in enumerate(self._edits):
                if wanted == command:
                    del self._edits[i]
                    payload = edit(b"".join(reply.lines))
                    return dataclasses.replace(reply, lines=tuple(payload.splitlines(keepends=True)))
        return reply

    def _run_replay(self, line: bytes, text: str, words: List[str], at: float, respond_at: float, baud: int) -> None:
        assert self.replay is not None
        if not words:
            self._transmit(b"\n\r" + self.prompt(), respond_at, baud, reply=False)
            return
        recorded = self.replay.lookup(text)
        if recorded is not None and recorded.framed:
            self._cut_left = self.bank.take_cut()
            self._transmit(recorded.data, respond_at, baud)
            return
        self._transmit(line + b"\n", at, baud, reply=False)
        if recorded is not None:
            payload = recorded.data
            if payload and not payload.endswith(b"\n"):
                payload += b"\r\n"
            reply = Reply(KV_HEAD, (payload,), success_tail(self.firmware))
        elif words[0] in ("login", "logout"):
            reply = self.command(words)
        else:
            reply = unknown_command(words[0])
        self._start_reply(reply, respond_at, baud)

    def _start_reply(self, reply: Reply, at: float, baud: int) -> None:
        self._cut_left = self.bank.take_cut()
        if self._replies_until_silent is not None:
            self._replies_until_silent -= 1
            if self._replies_until_silent <= 0:
                self._replies_until_silent = None
                self.bank.set_silent(True)  # this reply still goes out; nothing after it
        page = self.scenario.paging_lines or reply.page_lines
        if page and len(reply.lines) > page:
            self._paged = _Paged(reply.lines[page:], reply.tail, page)
            self._transmit(reply.head + b"".join(reply.lines[:page]) + PAGER, at, baud)
        else:
            self._transmit(reply.data() + b"\r" + self.prompt(), at, baud)

    def _page_key(self, byte: int, at: float, baud: int) -> None:
        paged = self._paged
        assert paged is not None
        at += self.scenario.latency
        if byte not in LINE_ENDS:
            self._paged = None
            self._transmit(b"\r\n" + ERROR_TAIL + b"\r" + self.prompt(), at, baud)
            return
        chunk, rest = paged.lines[: paged.page], paged.lines[paged.page :]
        if rest:
            paged.lines = rest
            self._transmit(PAGER_ERASE + b"".join(chunk) + PAGER, at, baud)
        else:
            self._paged = None
            self._transmit(PAGER_ERASE + b"".join(chunk) + paged.tail + b"\r" + self.prompt(), at, baud)

    # ------------------------------------------------------------- commands

    def command(self, words: Sequence[str]) -> Reply:
        """The reply to one command line, already split into words (also used by tests)."""
        fw = self.firmware
        name, args = words[0], list(words[1:])
        debug = self.bank.console_flags().debug
        if self.scenario.login_required and not debug and name in ("pwr", "bat", "info", "stat", "log"):
            return unknown_command(name)
        if name == "login":
            if debug:
                return invalid_command(fw, usage("login"), prefix=("Quit current mode",))
            if args == [self.scenario.password]:
                self.bank.set_debug(True)
                return done(fw)
            return invalid_command(fw, usage("login"))
        if name == "logout":
            self.bank.set_debug(False)
            return done(fw)
        if name == "help":
            return kv_reply(fw, help_lines(), fw.help_page_lines)
        if name == "log":
            return kv_reply(fw, log_lines(self.bank.rtc_start), 6 * fw.log_page_entries)
        if name == "pwr":
            if not args:
                if "pwr_table" in fw.rejects:
                    return invalid_command(fw, usage(name))
                return table_reply(fw, pwr_table(fw, self.bank.snapshots()))
            unit = self._unit(args)
            return invalid_command(fw, usage(name)) if unit is None else pwr_detail(fw, unit)
        if name in ("bat", "info", "stat"):
            if args and "%s_n" % name in fw.rejects:
                return invalid_command(fw, usage(name))
            unit = self._unit(args or ["1"])
            if unit is None:
                return invalid_command(fw, usage(name))
            if name == "bat":
                return table_reply(fw, bat_table(fw, unit))
            if name == "info":
                return kv_reply(fw, info_lines(fw, unit, self.baud))
            return table_reply(fw, stat_rows(fw, unit))
        return unknown_command(name)

    def _unit(self, args: Sequence[str]) -> Optional[UnitSnapshot]:
        if len(args) != 1:
            return None
        try:
            address = int(args[0])
        except ValueError:
            return None
        slots = self.firmware.pwr_rows or 16
        if not 1 <= address <= slots:
            return None
        unit = self.bank.snapshot(address)
        return unit if unit.present else None

    # ------------------------------------------------------------ output side

    def _transmit(self, data: bytes, at: float, baud: int, reply: bool = True) -> None:
        """Put ``data`` on the line; the client hears garbage at a wrong baud; faults apply to replies."""
        if reply:
            if self._cut_left is not None:
                if self._cut_left <= 0:
                    self._paged = None
                    return
                if len(data) >= self._cut_left:
                    data = data[: self._cut_left]
                    self._paged = None  # the reply died: no pager, no prompt
                self._cut_left -= len(data)
            data = self._faults(data)
        if baud != self.baud:
            data = bytes(self._rng.randrange(0x80, 0x100) for _ in range(junk_length(len(data), self.baud, baud)))
        self.output.send(data, at, BITS_PER_BYTE / float(self.baud))

    def _faults(self, data: bytes) -> bytes:
        flags = self.bank.console_flags()
        if not flags.garbage and not flags.drop:
            return data
        out = bytearray()
        for byte in bytearray(data):
            if flags.drop and self._rng.random() < flags.drop:
                continue
            if flags.garbage and self._rng.random() < flags.garbage:
                byte = self._rng.randrange(0x21, 0x7F)
            out.append(byte)
        return bytes(out)
