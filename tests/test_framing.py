"""Framing: cutting one reply out of the console byte stream.

The fixtures are hand-written in the byte styles of real captures (table rows
ending \\r\\r\\n, key:value lines \\r\\n\\r, echo followed by \\n\\r, piled prompts,
glued or missing "@", paging with the line-erase sequence); the numbers and
texts are invented.  The shared captures are only read, as a corpus check.
"""

import codecs
import os
import re
from typing import Dict, List, Optional, Tuple

import pytest

from extra200.framing import PAGE_PROMPT, FramingError, Reply, ReplyAssembler

END = b"\r\n\rCommand completed successfully\r\n\r$$\r\n\r"


def assemble(command: str, chunks: List[bytes]) -> Tuple[ReplyAssembler, int]:
    """Feed chunks, answering page prompts the way the transport does."""
    assembler = ReplyAssembler(command)
    continues = 0
    for chunk in chunks:
        assembler.feed(chunk)
        if assembler.needs_continue:
            assembler.continue_sent()
            continues += 1
    return assembler, continues


def frame(command: str, data: bytes) -> Reply:
    assembler, _ = assemble(command, [data])
    assert assembler.complete
    return assembler.reply()


# --- hand-written replies ------------------------------------------------------
# name -> (command, bytes, expected lines, ok, error, prompt, page prompts)

PWR_ROWS = (
    "Power Volt   Curr   Tempr  Tlow   Thigh  Vlow   Vhigh  Base.St  Volt.St  Curr.St  Temp.St  Coulomb  Time                 B.V.St   B.T.St",
    "1     52104  -2310  24100  22000  23000  3471   3476   Dischg   Normal   Normal   Normal   73%      2024-05-02 10:11:12  Normal   Normal",
    "2     52098  -2296  23800  22000  22000  3470   3474   Dischg   Normal   Normal   Normal   71%      2024-05-02 10:11:12  Normal   Normal",
    "3     -      -      -      -      -      -      -      Absent   -        -        -        -        -                    -        -",
)
PWR = b"\n\rpylon>\n\rpylon>pwr\n\r@\r\r\n" + b"\r\r\n".join(row.encode() + b"  " for row in PWR_ROWS) + END + b"pylon>"

INFO_LINES = (
    "Device address      : 2",
    "Manufacturer        : Pylon",
    "Device name         : US2000C",
    "Soft  version       : V1.9",
    "Barcode             : X0000000000000007",
    "",
    "Specification       : 48V/50AH",
    "Cell Number         : 15",
    "Console Port rate   : 115200",
)
INFO = (
    b"\r\n\rpylon>info 2\n\r@\r\n\r"
    + b"".join(line.encode() + b"    \r\n\r" for line in INFO_LINES)
    + b"Command completed successfully\r\n\r$$\r\n\rpylon>"
)

SOH_UNKNOWN = b"soh 1\n\r@\r\n\rUnknown command 'soh' - try 'help'\r\n\r$$\r\n\rpylon>"

BAD_INDEX = (
    b"pylon>bat 20 \n\r@\r\n\rInvalid command or fail to excute.\r\n\rUsage:\r\n"
    b"Battery data show - bat [index]\r\n\r$$\r\n\rpylon>"
)

NO_AT = (
    b"\rpylon>\n\rpylon>stat\r\r\nDevice address           0\r\r\n"
    b"Data Items      :      213\r\r\nCYCLE Times     :       41\r\n\r"
    b"Command completed successfully\r\n\r$$\r\n\rpylon>"
)

GLUED_AT = (
    b"\rpylon>\n\rpylon>bmuinfo 2\r@\r\n\rManufacturer        : Pylon\r\n\r"
    b"Cell Number         : 30\r\rCommand completed successfully\r\n\r$$\r\n\rpylon>"
)

PYTES_BAT = (
    b"\n\rPYTES>\n\rPYTES>bat 1\n\r@\r\r\n"
    b"Battery  Volt     Tempr    Base State   Coulomb\r\r\n"
    b"0        3301     21000    Idle          64%      32110 mAH\r\r\n"
    b"1        3302     21000    Idle          64%      32115 mAH\r\n\r"
    b"Command completed successfully\r\n\r$$\r\n\rPYTES>"
)

DEBUG_PILE = (
    b">pylon_debug>getpwr\n\r@\r\n\r Power System Info\r\n\r Voltage : 52100 mV\r\n\r"
    b"Command completed successfully\r\n\r$$\r\n\rpylon_debug>"
)

BANG_LF = (
    b"stat\n@\nDevice address           1\nCharge Secs.      :    88213\n"
    b"Power on Times    :       17\nCommand completed successfully!\n$$\npylon>"
)

ERASE = b"\r\r" + b" " * 50 + b"\r\r\r\n"
LOG_ENTRIES = [
    (
        " Index   : %d" % index,
        " Time    : 24-03-0%d 08:00:00" % (index % 9),
        " ModID   : BMM",
        " Code    : %x" % (index * 7),
        " Info    : The device start charging.",
    )
    for index in range(6, 0, -1)
]


def _log_bytes() -> bytes:
    out = b"\n\rpylon>\n\rpylon>log\n\r@\r\n\r"
    for number, entry in enumerate(LOG_ENTRIES):
        out += b"\r\n\r".join(field.encode() + b" " for field in entry)
        if number in (2,):  # a page break after the third entry
            out += b"\n\r" + PAGE_PROMPT + ERASE + b"\r"
        elif number == len(LOG_ENTRIES) - 1:
            out += b"\r\n\r\r\n\r"
        else:
            out += b"\r\n\r\r\n\r"
    return out + b"Command completed successfully\r\n\r$$\r\n\rpylon>"


def _log_lines() -> Tuple[str, ...]:
    lines: List[str] = []
    for number, entry in enumerate(LOG_ENTRIES):
        lines.extend(entry)
        if number not in (2, len(LOG_ENTRIES) - 1):
            lines.append("")
    return tuple(lines)


HELP_PAGED = (
    b"\n\rPYTES>\n\rPYTES>help\n\r@\r\r\nLocal command:\r\n\rbat      Battery data show\r\n\r"
    b"pwr      Power data show\n\r" + PAGE_PROMPT + b"\r\r" + b" " * 50 + b"\r\r"
    b"soh      State of health\r\n\rstat     Statistic data show\n\r" + PAGE_PROMPT + ERASE + b"\r"
    b"time     Time\r\n\rCommand completed successfully\r\n\r$$\r\n\rPYTES>"
)

NOISE_TAIL = (
    b"\x00\xf8\x7f?\xff\r\n  \r\r\n2     52098  -2296  Normal\r\n\rCommand completed successfully\r\n\r$$\r\n\rpylon>"
    b"\n\rpylon>time\n\r@\r\n\rDs3231 2024-05-02 10:11:40\r\n\rCommand completed successfully\r\n\r$$\r\n\rpylon>"
)

UNSUCCESSFUL = b"\rpylon>\n\rpylon>bmuinfo 7\n\r@\r\n\rCommand completed unccessfully\r\n\r$$\r\n\rpylon>"

EMPTY_ERROR = b"pwr 9\n\r@\r\n\r$$\r\n\rpylon>"

SPLIT_PROMPT = (
    b"\n\rpylon>\n\rpylon>time\n\r@\r\n\rDs3231 2024-05-02 10:11:40\r\n\rCommand completed successfully\r\n\r$$\n\npylon>"
)

CASES = {
    "pwr table, piled prompts": ("pwr", PWR, PWR_ROWS, True, None, "pylon>", 0),
    "info key:value": ("info 2", INFO, INFO_LINES, True, None, "pylon>", 0),
    "unknown command": (
        "soh 1",
        SOH_UNKNOWN,
        ("Unknown command 'soh' - try 'help'",),
        False,
        "Unknown command 'soh' - try 'help'",
        "pylon>",
        0,
    ),
    "bad index, echo with trailing space": (
        "bat 20",
        BAD_INDEX,
        ("Invalid command or fail to excute.", "Usage:", "Battery data show - bat [index]"),
        False,
        "Invalid command or fail to excute.",
        "pylon>",
        0,
    ),
    "missing @": (
        "stat",
        NO_AT,
        ("Device address           0", "Data Items      :      213", "CYCLE Times     :       41"),
        True,
        None,
        "pylon>",
        0,
    ),
    "glued @ and glued completion": (
        "bmuinfo 2",
        GLUED_AT,
        ("Manufacturer        : Pylon", "Cell Number         : 30"),
        True,
        None,
        "pylon>",
        0,
    ),
    "PYTES prompt": (
        "bat 1",
        PYTES_BAT,
        (
            "Battery  Volt     Tempr    Base State   Coulomb",
            "0        3301     21000    Idle          64%      32110 mAH",
            "1        3302     21000    Idle          64%      32115 mAH",
        ),
        True,
        None,
        "PYTES>",
        0,
    ),
    "debug prompt pile": ("getpwr", DEBUG_PILE, (" Power System Info", " Voltage : 52100 mV"), True, None, "pylon_debug>", 0),
    "LF only, completion with !": (
        "stat",
        BANG_LF,
        ("Device address           1", "Charge Secs.      :    88213", "Power on Times    :       17"),
        True,
        None,
        "pylon>",
        0,
    ),
    "log paged": ("log", _log_bytes(), _log_lines(), True, None, "pylon>", 1),
    "help paged twice": (
        "help",
        HELP_PAGED,
        (
            "Local command:",
            "bat      Battery data show",
            "pwr      Power data show",
            "soh      State of health",
            "stat     Statistic data show",
            "time     Time",
        ),
        True,
        None,
        "PYTES>",
        2,
    ),
    "noise and an old tail before the echo": ("time", NOISE_TAIL, ("Ds3231 2024-05-02 10:11:40",), True, None, "pylon>", 0),
    "unsuccessful completion": (
        "bmuinfo 7",
        UNSUCCESSFUL,
        ("Command completed unccessfully",),
        False,
        "Command completed unccessfully",
        "pylon>",
        0,
    ),
    "empty error reply": ("pwr 9", EMPTY_ERROR, (), False, "empty reply without a completion line", "pylon>", 0),
    "blank line before the prompt": ("time", SPLIT_PROMPT, ("Ds3231 2024-05-02 10:11:40",), True, None, "pylon>", 0),
}

CASE_IDS = sorted(CASES)


@pytest.mark.parametrize("name", CASE_IDS)
def test_frames_whole(name: str) -> None:
    command, data, lines, ok, error, prompt, _ = CASES[name]
    reply = frame(command, data)
    assert reply.command == command
    assert reply.lines == tuple(lines)
    assert reply.ok is ok
    assert reply.error == error
    assert reply.prompt == prompt
    assert reply.raw == data
    assert reply.text == "\n".join(lines)


@pytest.mark.parametrize("name", CASE_IDS)
def test_every_split_gives_the_same_reply(name: str) -> None:
    command, data, _, _, _, _, _ = CASES[name]
    expected = frame(command, data)
    for cut in range(len(data) + 1):
        assembler, _ = assemble(command, [data[:cut], data[cut:]])
        assert assembler.complete, cut
        assert assembler.reply() == expected, cut


@pytest.mark.parametrize("name", CASE_IDS)
def test_one_byte_at_a_time(name: str) -> None:
    command, data, _, _, _, _, pages = CASES[name]
    assembler, continues = assemble(command, [data[i : i + 1] for i in range(len(data))])
    assert assembler.complete
    assert assembler.reply() == frame(command, data)
    assert continues == pages


@pytest.mark.parametrize("name", CASE_IDS)
def test_cut_short_is_never_complete(name: str) -> None:
    command, data, _, _, _, _, _ = CASES[name]
    assembler = ReplyAssembler(command)
    for position in range(len(data)):
        assembler.feed(data[position : position + 1])
        if position < len(data) - 1:
            assert not assembler.complete, position
            with pytest.raises(FramingError):
                assembler.reply()


def test_page_prompt_asks_for_enter_once() -> None:
    data = _log_bytes()
    cut = data.index(PAGE_PROMPT) + len(PAGE_PROMPT)
    assembler = ReplyAssembler("log")
    assembler.feed(data[: cut - 1])
    assert not assembler.needs_continue
    assembler.feed(data[cut - 1 : cut])
    assert assembler.needs_continue
    assembler.feed(b"")
    assert assembler.needs_continue
    assembler.continue_sent()
    assert not assembler.needs_continue
    assembler.feed(data[cut : cut + 3])
    assert not assembler.needs_continue
    assembler.feed(data[cut + 3 :])
    assert assembler.complete and not assembler.needs_continue


def test_trailing_bytes_after_the_prompt_are_kept_in_raw() -> None:
    assembler, _ = assemble("pwr", [PWR + b"\n"])
    assert assembler.complete
    reply = assembler.reply()
    assert reply.lines == PWR_ROWS
    assert reply.raw == PWR + b"\n"


# --- corrupted replies -----------------------------------------------------------


def _payload_positions(data: bytes) -> List[int]:
    """Offsets strictly inside payload text (not in line ends), after the "@" line."""
    start = data.index(b"@") + 1
    stop = data.index(b"Command completed")
    return [i for i in range(start, stop) if data[i : i + 1] not in (b"\r", b"\n")]


@pytest.mark.parametrize("bad", [b"\x00", b"\x1b", b"\xc8", b"\x7f", b"\xff"])
def test_non_text_byte_in_payload_is_framing_error(bad: bytes) -> None:
    for position in _payload_positions(PWR)[::7]:
        data = PWR[:position] + bad + PWR[position:]
        assembler, _ = assemble("pwr", [data])
        assert assembler.complete
        with pytest.raises(FramingError, match="non-text"):
            assembler.reply()


def test_prompt_inside_payload_is_framing_error() -> None:
    rows = PWR.index(b"2     52098")
    for inserted in (b"pylon>\r\n\r", b"pylon>pwr\n\r@\r\r\n", b"PYTES>\r\r\n"):
        data = PWR[:rows] + inserted + PWR[rows:]
        assembler, _ = assemble("pwr", [data])
        assert assembler.complete
        with pytest.raises(FramingError, match="prompt inside"):
            assembler.reply()


def test_garbled_echo_is_framing_error_not_a_hang() -> None:
    data = PWR.replace(b"pylon>pwr", b"pylon>pxr")
    assembler, _ = assemble("pwr", [data])
    assert assembler.complete
    with pytest.raises(FramingError, match="echo of 'pwr' not found"):
        assembler.reply()


def test_other_commands_reply_is_not_taken_for_ours() -> None:
    assembler, _ = assemble("pwr", [INFO])
    assert assembler.complete
    with pytest.raises(FramingError, match="'info 2'"):
        assembler.reply()


def test_garbled_closing_prompt_is_framing_error() -> None:
    data = PWR[: -len(b"pylon>")] + b"py?on>"
    assembler, _ = assemble("pwr", [data])
    assert assembler.complete
    with pytest.raises(FramingError, match="garbled prompt"):
        assembler.reply()


def test_text_after_completion_line_is_framing_error() -> None:
    data = NO_AT.replace(b"\r\n\r$$", b"\r\n\rData Items      :      213\r\n\r$$")
    assembler, _ = assemble("stat", [data])
    with pytest.raises(FramingError, match="after the completion"):
        assembler.reply()


def test_noise_before_the_echo_is_skipped_and_flagged() -> None:
    assembler, _ = assemble("stat", [b"\xff\xfe\x00\r\n", NO_AT])
    assert assembler.garbage_seen
    assert assembler.reply().lines[0] == "Device address           0"


def test_pure_garbage_never_completes() -> None:
    assembler, _ = assemble("pwr", [bytes(range(256)) * 4])
    assert not assembler.complete
    assert not assembler.echo_seen
    assert assembler.garbage_seen


def test_echo_of_a_longer_command_is_not_ours() -> None:
    data = PYTES_BAT.replace(b"PYTES>bat 1\n", b"PYTES>bat 11\n")
    assembler, _ = assemble("bat 1", [data])
    assert not assembler.echo_seen
    assert assembler.complete  # a whole reply to another command arrived
    with pytest.raises(FramingError):
        assembler.reply()


# --- the shared captures, read-only ------------------------------------------------

# Captures whose line ends are the device's own bytes (raw CRs, or escaped text).
# Known outcomes that are not a plain successful reply:
ODD_CAPTURES = {
    # Pytes V5 "soh" prints a 0xC8 byte in its header: rejected as corrupted.
    "pytes-e-box-48100v-d__soh-1__": "framing-error",
    "pytes-e-box-48100v-d__soh__": "framing-error",
    # The capture stops at a page prompt.
    "us2kbpl__help__donverduyn": "incomplete",
    "pytes-e-box-48100v-d__stat-1__": "rejected",
    "force-h2__bmuinfo-3__PLCHome-ioBroker.pylontech__2": "rejected",
}

_ECHO = re.compile(rb"(?:^|[\r\n])(?:[A-Za-z_]*>)*([a-z][a-z0-9 ]*?) *(?=[\r\n])")


def _raw_captures(directory: str) -> Dict[str, bytes]:
    found = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".txt"):
            continue
        with open(os.path.join(directory, name), "rb") as handle:
            data = handle.read()
        if "donverduyn" in name:
            data = codecs.decode(data.decode("ascii"), "unicode_escape").encode("latin-1")
        elif b"\r" not in data:
            continue
        found[name] = data
    return found


def _outcome(name: str) -> Optional[str]:
    for prefix, outcome in ODD_CAPTURES.items():
        if name.startswith(prefix):
            return outcome
    return None


def test_raw_captures_frame(captures_dir: str) -> None:
    captures = _raw_captures(captures_dir)
    assert len(captures) >= 40
    for name, data in captures.items():
        command = _ECHO.search(data).group(1).decode()
        assembler, continues = assemble(command, [data[i : i + 1] for i in range(len(data))])
        outcome = _outcome(name)
        if outcome == "incomplete":
            assert not assembler.complete and continues == 1, name
            continue
        assert assembler.complete, name
        if outcome == "framing-error":
            with pytest.raises(FramingError, match="non-text"):
                assembler.reply()
            continue
        reply = assembler.reply()
        assert reply.ok is (outcome is None), name
        assert reply.lines and reply.prompt in ("pylon>", "PYTES>"), name
        text = data.decode("ascii")
        for line in reply.lines:
            assert line == line.rstrip() and "\r" not in line and "\n" not in line, name
            assert "$$" not in line and "Press [Enter]" not in line and not line.startswith("pylon>"), name
            assert line in text, name
        assert "Command completed successfully" not in reply.text, name
        assert continues == data.count(PAGE_PROMPT), name


def test_endless_line_is_dropped_before_the_echo_and_fatal_after_it() -> None:
    noise = b"\xaa\x55" * 6000  # no line end at all
    assembler, _ = assemble("stat", [noise[i : i + 40] for i in range(0, len(noise), 40)] + [b"\r\n", NO_AT])
    assert assembler.reply().lines[0] == "Device address           0"
    echo_end = NO_AT.index(b"\r\r\n") + 3
    data = NO_AT[:echo_end] + b"x" * 5000 + b"\r\r\n" + NO_AT[echo_end:]
    assembler, _ = assemble("stat", [data])
    with pytest.raises(FramingError):
        assembler.reply()


def test_noise_glued_to_the_echo() -> None:
    data = NO_AT.replace(b"pylon>stat", b"pylon>\xfe\x00stat")
    assembler, _ = assemble("stat", [data])
    assert assembler.reply().lines[-1] == "CYCLE Times     :       41"


def test_the_lines_so_far_are_offered_only_while_nothing_about_them_is_in_doubt() -> None:
    clean = ReplyAssembler("pwr")
    clean.feed(b"pwr\n\r@\r\r\nPower Volt\r\r\n1     49774\r\r\n2")
    assert clean.lines_so_far() == ("Power Volt", "1     49774")  # unit 2's line has not ended yet
    partial = clean.partial_reply()
    assert partial.partial and not partial.ok and partial.text == "Power Volt\n1     49774"
    noisy = ReplyAssembler("pwr")
    noisy.feed(b"pwr\n\r@\r\r\nPower Volt\r\r\n1     49\xfe774\r\r\n2")
    assert noisy.lines_so_far() is None  # line noise: only the whole reply, voted, counts
    ended = ReplyAssembler("pwr")
    ended.feed(b"pwr\n\r@\r\r\nPower Volt\r\r\n1     49774\r\n\rCommand completed successfully\r\n\r$")
    assert ended.lines_so_far() is None  # its end is in: the whole reply is moments away
