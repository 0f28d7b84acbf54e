"""extra200.parsing on every real console capture in ../shared/captures.

The captures are third-party and are only read from ../shared/captures (the
test skips when that folder is absent).  Each file, or each exchange of a
session file, has an expected outcome in ``EXPECTED`` below: parsed (and then
plausible), refused for a stated corruption, rejected by the battery, or not a
command this program reads.  A parser change that suddenly refuses a good
capture, or accepts a corrupted one, fails here.
"""

import codecs
import fnmatch
import os
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import CAPTURES
from extra200.model import CellTable, DeviceInfo, PowerDetail, Statistics
from extra200.parsing import (
    ParseError,
    is_error_reply,
    parse_cell_table,
    parse_info,
    parse_power_detail,
    parse_power_table,
    parse_stats,
)

PARSED = "parsed"
REFUSED = "refused"  # ParseError: corrupted in a field this program reads
REJECTED = "rejected"  # the battery's own error reply
NOT_READ = "not read"  # a command this program does not parse

# (file name pattern, command of the exchange, outcome, why); the first match wins.
EXPECTED = [
    # Corrupted captures
    (
        "pytes-e-box-4850p__bat-2__*",
        "bat 2",
        REFUSED,
        "cell 2's row is garbled: '80%' under Temp. State and 'Normal' where the SoC belongs",
    ),
    (
        "us2kbpl__session__tomascrespo-*",
        "info",
        REFUSED,
        "dropped characters: 'Device ddress' (no address line), 'EPONPort rate : 120000mA'",
    ),
    ("us2kbpl__session__tomascrespo-*", "info 1", REFUSED, "dropped characters: 'Deve addres' (no address line)"),
    (
        "us2kbpl__session__tomascrespo-*",
        "info 2",
        REFUSED,
        "dropped characters: 'Main Soft version' lost its colon; 'Console Port rate : 1152'",
    ),
    ("us2kbpl__session__tomascrespo-*", "bat 2", REFUSED, "the table header was lost"),
    ("us2kbpl__session__tomascrespo-*", "socd*", NOT_READ, "BQ34z100 gauge data (debug mode), not read"),
    # Accepted although corrupted: the garbled bytes sit in a label this program does not
    # interpret ('LifeWa}&(' for 'LifeWarn Times'); it is kept in counters as printed.
    ("us5000__stat-1__mrw298-*", "stat 1", PARSED, "garbled label kept in counters"),
    # The battery's error replies
    ("us3000d__info-1__*", "info 1", REJECTED, "US3000D answers only a bare 'info'"),
    ("us3000d__stat-1__*", "stat 1", REJECTED, "US3000D answers only a bare 'stat'"),
    ("pytes-e-box-48100v-d__stat-1__*", "stat 1", REJECTED, "Pytes V5 answers only a bare 'stat'"),
    ("us2000c__bat-session__tom-da-costa-*", "bat 20", REJECTED, "there is no unit 20"),
    ("us2000c__bat-session__tom-da-costa-*", "bit 1", REJECTED, "no such command"),
    ("us3000c__soh-1__*", "soh 1", REJECTED, "B69.25 has no soh command"),
    ("force-h2__bmuinfo-3__*__2.txt", "bmuinfo 3", REJECTED, "Force: 'Command completed unccessfully'"),
    # Force commands this program does not read (it reads pwr, bat, info, stat as on LV units;
    # the pwr system row's BMU extremes, Wh and error code are checked, then dropped)
    ("force-*__unit__*", "unit", NOT_READ, "per-BMU table; the system row of pwr is what is read"),
    ("force-*__sysinfo__*", "sysinfo", NOT_READ, "charge / discharge limits and thresholds; not read"),
    ("force-*__bmuinfo-*", "bmuinfo *", NOT_READ, "BMU identity; not read"),
    # Everything else: the four commands this program reads parse; the rest is not read.
    ("*", "pwr", PARSED, "whole-bank table"),
    ("*", "pwr [0-9]*", PARSED, "one unit's detail"),
    ("*", "bat", PARSED, "cells of the unit the cable is plugged into"),
    ("*", "bat [0-9]*", PARSED, "cells of one unit"),
    ("*", "info*", PARSED, "identity and ratings"),
    ("*", "stat*", PARSED, "lifetime counters"),
    ("*", "*", NOT_READ, "soh, log, help, time, ver, ci, getpwr, pwrsys: not read"),
]

# What the ParseError says for each refused or rejected exchange (file name pattern, command, regular expression).
REFUSALS = [
    (
        "pytes-e-box-4850p__bat-2__*",
        "bat 2",
        r"^bat 2 line 15: column Temp\. State starts 4 character\(s\) off its header \(dropped character\?\): '2 .*80%",
    ),
    ("us2kbpl__session__tomascrespo-*", "info", r"^info: no 'Device address' line in the reply$"),
    ("us2kbpl__session__tomascrespo-*", "info 1", r"^info: no 'Device address' line in the reply$"),
    ("us2kbpl__session__tomascrespo-*", "info 2", r"^info line 7: not a 'key : value' line: 'Main Soft version +B67\.13\.0\.0'$"),
    ("us2kbpl__session__tomascrespo-*", "bat 2", r"^bat 2: no table header in the reply$"),
    ("*", "*", r"^(info|stat|bat \d+): the battery rejected the command: Invalid command or fail to excute[.!]$"),
]

# (file name pattern, rows, present units) of every whole-bank table, from INDEX.md.
PWR_SHAPES = [
    ("force-*", 1, 1),
    ("pytes-e-box-48100v-d__*", 16, 1),
    ("pytes-e-box-4850p__*", 8, 2),
    ("unknown__pwr__mensi-*", 16, 1),
    ("us2000c__pwr__Hrabovszki1023-*", 16, 5),
    ("us2000c__pwr-session__*", 16, 6),
    ("us2kbpl__pwr__donverduyn-*", 8, 2),
    ("us2kbpl__session__tomascrespo-*", 8, 2),
    ("us3000c__pwr__*", 16, 1),
    ("us3000d__pwr__*", 6, 6),
    ("us5000__pwr__PLCHome-*", 16, 4),
    ("us5000__pwr__mrw298-*", 16, 6),
]


def capture_names() -> List[str]:
    if not os.path.isdir(CAPTURES):
        return ["(no captures)"]
    return sorted(name for name in os.listdir(CAPTURES) if "__" in name and name.endswith(".txt"))


def load(path: str) -> str:
    """A capture's text; ESCAPED NOTATION files (one line of literal \\r \\n) are decoded."""
    with open(path, "rb") as handle:
        raw = handle.read()
    text = raw.decode("latin-1")
    if b"\\r" in raw and raw.count(b"\n") < 2:
        text = codecs.decode(text, "unicode_escape")
    return text


def exchanges(name: str, text: str) -> Iterator[Tuple[str, str]]:
    """(command, text) of each exchange: the whole file, or each echo of a session file."""
    command = name.split("__")[1]
    if "session" not in command:
        yield command.replace("-", " "), text
        return
    current = None  # type: Optional[Tuple[str, List[str]]]
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        stripped = line.strip()
        echoed = stripped[stripped.rfind(">") + 1 :].strip() if ">" in stripped else ""
        if echoed:
            if current is not None:
                yield current[0], "\n".join(current[1])
            current = (" ".join(echoed.split()), [line])
        elif current is not None:
            current[1].append(line)
    if current is not None:
        yield current[0], "\n".join(current[1])


def expected(name: str, command: str) -> Tuple[str, str]:
    for pattern, wanted, outcome, why in EXPECTED:
        if fnmatch.fnmatchcase(name, pattern) and fnmatch.fnmatchcase(command, wanted):
            return outcome, why
    raise AssertionError("no expectation for %s %r" % (name, command))  # the catch-all matches


def refusal(name: str, command: str) -> str:
    """The regular expression the ParseError of a refused or rejected exchange must match."""
    return next(
        says for pattern, wanted, says in REFUSALS if fnmatch.fnmatchcase(name, pattern) and fnmatch.fnmatchcase(command, wanted)
    )


def parser_for(command: str) -> Optional[Callable[[str], object]]:
    words = command.split()
    if words[0] == "pwr":
        return parse_power_table if len(words) == 1 else parse_power_detail
    if words[0] == "bat":
        address = int(words[1]) if len(words) > 1 else 1
        return lambda text: parse_cell_table(text, address)
    return {"info": parse_info, "stat": parse_stats}.get(words[0])


@pytest.fixture(scope="module")
def ratings() -> Dict[str, DeviceInfo]:
    """Model (file name prefix) -> its info record, from the info captures that parse."""
    found = {}  # type: Dict[str, DeviceInfo]
    if not os.path.isdir(CAPTURES):
        return found
    for name in capture_names():
        if fnmatch.fnmatchcase(name, "*__info*") and not name.startswith("unknown"):
            try:
                found.setdefault(name.split("__")[0], parse_info(load(os.path.join(CAPTURES, name))))
            except ParseError:
                pass
    return found


def check_plausible(name: str, command: str, record: object, text: str, ratings: Dict[str, DeviceInfo]) -> None:
    """Independent sanity of a parsed capture (not a repetition of the parser's own checks)."""
    model = ratings.get(name.split("__")[0])
    if isinstance(record, list):  # pwr
        shape = [(rows, present) for pattern, rows, present in PWR_SHAPES if fnmatch.fnmatchcase(name, pattern)]
        assert shape, "no expected shape for %s" % name
        assert (len(record), sum(row.present for row in record)) == shape[0]
        assert [row.address for row in record] == list(range(1, len(record) + 1))
        for row in record:
            if not row.present:
                assert row.voltage is None and row.soc is None and row.current is None
                continue
            assert row.voltage is not None and row.current is not None and row.soc is not None
            assert 40.0 <= row.voltage <= 60.0 or name.startswith("force")
            assert 0.0 <= row.soc <= 100.0 and -100.0 <= row.current <= 100.0
            assert 2.5 <= row.cell_voltage_low <= row.cell_voltage_high <= 3.7  # type: ignore[operator]
            assert -10.0 <= row.temperature <= 60.0  # type: ignore[operator]
            assert row.base_state in ("Charge", "Dischg", "Idle")
    elif isinstance(record, CellTable):
        cells = record.cells
        assert [cell.index for cell in cells] == list(range(len(cells)))
        if model is not None and model.cell_count is not None:
            assert len(cells) == model.cell_count  # e.g. 16 on Pytes V5, 120 on a Force H2
        else:
            assert len(cells) in (15, 16)
        for cell in cells:
            assert 2.5 <= cell.voltage <= 3.7  # type: ignore[operator]
            assert cell.soc is None or 0.0 <= cell.soc <= 100.0
            assert cell.coulomb is None or 0.0 <= cell.coulomb <= 200.0
    elif isinstance(record, PowerDetail):
        assert record.voltage is not None and record.current is not None and record.soc is not None
        assert str(record.address) == command.split()[1]
        if model is not None and record.total_capacity is not None:
            assert record.total_capacity == model.nominal_capacity
    elif isinstance(record, DeviceInfo):
        assert record.address is not None and record.device_name and record.cell_count
        assert record.nominal_capacity is not None and record.max_discharge_current
        assert record.console_baud in (None, 115200)
    elif isinstance(record, Statistics):
        assert record.address is not None and record.counters
        assert (record.cycle_count is not None) == ("CYCLE Times" in text)
        assert record.soh is None or 0.0 <= record.soh <= 100.0
    else:
        raise AssertionError("unexpected record %r" % (record,))


@pytest.mark.parametrize("name", capture_names())
def test_capture(name: str, captures_dir: str, ratings: Dict[str, DeviceInfo]) -> None:
    text = load(os.path.join(captures_dir, name))
    for command, part in exchanges(name, text):
        outcome, why = expected(name, command)
        parse = parser_for(command)
        where = "%s %r (%s)" % (name, command, why)
        if outcome == REJECTED:
            assert is_error_reply(part), where
        else:
            assert is_error_reply(part) is None, where
        if outcome == NOT_READ:
            assert parse is None, where
        if parse is None:
            continue
        if outcome == PARSED:
            check_plausible(name, command, parse(part), part, ratings)
        else:
            with pytest.raises(ParseError, match=refusal(name, command)):
                parse(part)


def test_every_exception_in_the_table_matches_a_capture(captures_dir: str) -> None:
    seen = set()
    for name in capture_names():
        for command, _ in exchanges(name, load(os.path.join(captures_dir, name))):
            for index, (pattern, wanted, _, _) in enumerate(EXPECTED):
                if fnmatch.fnmatchcase(name, pattern) and fnmatch.fnmatchcase(command, wanted):
                    seen.add(index)
                    break
    unused = [EXPECTED[index][:2] for index in range(len(EXPECTED)) if index not in seen]
    assert unused == []
    said = {
        refusal(name, command)
        for name in capture_names()
        for command, _ in exchanges(name, load(os.path.join(captures_dir, name)))
        if expected(name, command)[0] in (REFUSED, REJECTED) and parser_for(command) is not None
    }
    assert said == {says for _, _, says in REFUSALS}
    assert all(any(fnmatch.fnmatchcase(name, shape[0]) for name in capture_names()) for shape in PWR_SHAPES)


def test_garbled_label_is_kept_as_printed(captures_dir: str) -> None:
    """The mrw298 stat lost bytes inside one label: the counters keep it, nothing interpreted moved."""
    name = next(name for name in capture_names() if fnmatch.fnmatchcase(name, "us5000__stat-1__mrw298-*"))
    stats = parse_stats(load(os.path.join(captures_dir, name)))
    printable = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .@()%~")
    garbled = [label for label in stats.counters if not set(label) <= printable]
    assert len(garbled) == 1
    assert stats.cycle_count is not None and stats.soh is not None


def test_every_capture_has_an_outcome(captures_dir: str) -> None:
    """A summary: how many exchanges of each outcome, so a silent change shows up."""
    counts = {PARSED: 0, REFUSED: 0, REJECTED: 0, NOT_READ: 0}
    for name in capture_names():
        for command, _ in exchanges(name, load(os.path.join(captures_dir, name))):
            counts[expected(name, command)[0]] += 1
    assert counts[REFUSED] == 5
    assert counts[REJECTED] == 7
    assert counts[PARSED] >= 80
