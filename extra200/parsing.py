"""Console replies to typed records: ``pwr``, ``pwr N``, ``bat N``, ``info``, ``stat``.

Pure functions, no I/O, no clock.  Each parser takes the reply as the transport
hands it over (the payload between the echo / ``@`` and the completion line /
``$$``, possibly with stray ``\\r``) and is equally happy with a whole transcript
around it (echo, ``@``, prompt, completion line, ``$$``, blank lines, any mix of
``\\r\\r\\n`` / ``\\r\\n\\r`` / ``\\n`` line ends), so the same functions read a
capture file directly.  Line ends are normalised here and the block is found by
its header line (a table header, ``Power N``, ``Device address``).

How a table is read
-------------------
* By header names, never by character positions: the header line is split into
  column names (some are two words: ``Base State``, ``Volt. State``, ``Err Code``
  ...), each row into whitespace-separated tokens, and the tokens are handed to
  the columns in order.  Each column knows the shape of its value (``Time`` is a
  date and a time, ``Coulomb`` may be ``44628 mAH`` or ``89%  42586 mAH`` ...),
  and the row must be used up exactly.  ``Absent`` rows keep the old 16-field
  layout under every header and are recognised by their token.
* Every value is checked: plain decimal numbers, the expected unit, state words,
  physically possible values (cell 1-5 V, pack 5-1000 V, -50..150 degC, SoC
  0..110 %), rows and cells numbered without gaps.
* Dropped characters (common at 115200 baud) are caught by independent checks,
  because a lost digit can leave a number in range (``96%`` -> ``6%``):

  - The console prints each row under its header, so a character lost inside a
    row (or in the header) moves every later token one place.  The parser never
    reads a value at a position; it only refuses a row whose tokens are not
    where the header puts them: exactly under their names up to the first
    column whose values are right-aligned or change width, no further left than
    the small, observed offsets after it (``_Spec``).  From there on, two
    neighbouring tokens keep the same distance in every row.  ``pwr``'s Absent
    rows, always in the old layout, show whether the header itself lost a
    character.
  - ``bat``: each cell's Ah must fit its SoC and the other cells' capacity, which
    catches a digit lost in a right-aligned value; Force WH must fit AH.
    Force ``pwr`` prints the pack voltage twice (``Bat Volt`` and the row).
  - ``pwr N``: every unit (mV, mA, ...) sits in one column, and where the
    console's padding is there, values without a unit fill fields as wide as
    their kind's; ``stat``: the counters we interpret are right-aligned with
    their neighbours; ``info``: rated voltage, cell count, capacity and currents
    must agree with each other.
  - Words: a state, protection, manufacturer or model name that is a known word
    with characters lost (or two known words run together) is refused.

  Any one lost character in a table gives ParseError or the same numbers (the
  tests delete every character of every layout).  What cannot be caught: a
  character lost in a free-text value (versions, barcodes, ``DevType``), in a
  count the console prints without padding, or one that turns a word into
  another known word (``US3000C`` -> ``US3000``); losses that cancel out (one in
  the header's padding plus one in the same column of a single-row table
  without Absent rows, i.e. Force HV or one US3000D; two in the right-hand
  values of one row); a table cut between two rows where any row count is valid
  (see ``parse_cell_table``'s ``cells``; the transport's framing guards this);
  and garbage that happens to form a number: a last digit turned into a space,
  a first digit into ``-``, a hex digit of an event word into another.

* Anything that does not fit raises :class:`ParseError`; there are no partial
  results.  Exception, for key : value blocks only: a key we do not know (new
  firmware, or a garbled key) is kept in ``extra`` / ``counters`` as printed.
"""

import logging
import re
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple

from .model import CellRow, CellTable, DeviceInfo, PowerDetail, PowerRow, Statistics

logger = logging.getLogger(__name__)

__all__ = [
    "ParseError",
    "is_error_reply",
    "parse_cell_table",
    "parse_info",
    "parse_number",
    "parse_power_detail",
    "parse_power_table",
    "parse_stats",
]


class ParseError(ValueError):
    """A reply that cannot be read completely and plausibly; the message says where and why."""


# ---------------------------------------------------------------------------
# Limits: values outside them are physically impossible, hence corrupted.

CELL_VOLTS = (1.0, 5.0)
PACK_VOLTS = (5.0, 1000.0)
CELSIUS = (-50.0, 150.0)
PERCENT = (0.0, 110.0)
MAX_AMPS = 1000.0
MAX_AMP_HOURS = 5000.0
# Pack voltage / mean cell voltage: the number of cells in series.  A lost
# digit in the pack voltage divides it by ~10, far below any real pack.
SERIES_CELLS = (3.5, 400.0)
# Cells per module in a low-voltage ``bat N`` table (Force HV: any count).
LV_CELL_COUNTS = (15, 16)
# ``pwr`` rows: 8 or 16 address slots with the old 16-column header, 16 with any
# newer one; US3000D firmware (cell-index columns, no SysAlarm.St) lists present units only.
PWR_SLOTS = (8, 16)
MAX_UNITS = 16
_OLD_PWR_HEADER = (
    "Power",
    "Volt",
    "Curr",
    "Tempr",
    "Tlow",
    "Thigh",
    "Vlow",
    "Vhigh",
    "Base.St",
    "Volt.St",
    "Curr.St",
    "Temp.St",
    "Coulomb",
    "Time",
    "B.V.St",
    "B.T.St",
)
BAUD_RATES = frozenset((1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400))

# State words seen in captures and documentation.  Other words are accepted
# (firmware adds states) unless they are one edit away from one of these,
# which is what a dropped or garbled character makes of a known word.
# Protection and model names are checked for lost characters only (a new
# model may well differ from a known one in one letter).
STATE_WORDS = frozenset(
    (
        "Normal",
        "High",
        "Low",
        "Charge",
        "Dischg",
        "Idle",
        "Balance",
        "SysError",
        "Full",
        "Abnormal",
        "ON",
        "OFF",
    )
)

# ``Protect ENA`` names (``pwr N``); Pytes V5 prints its own lists, kept in extra.
PROTECTION_NAMES = frozenset(
    (
        "BOV",
        "BHV",
        "BLV",
        "BUV",
        "POV",
        "PHV",
        "PLV",
        "PUV",
        "CBOT",
        "CBHT",
        "CBLT",
        "CBUT",
        "DBOT",
        "DBHT",
        "DBLT",
        "DBUT",
        "POT",
        "PHT",
        "PLT",
        "PUT",
        "COC",
        "COC2",
        "COCA",
        "DOCA",
        "DOC",
        "DOC2",
        "SC",
        "LCOUL",
    )
)
# ``info`` identity words.
MANUFACTURERS = frozenset(("Pylon", "PYTES"))
DEVICE_NAMES = frozenset(
    (
        "US2000",
        "US2000B",
        "US2000C",
        "US2KBPL",
        "US3000",
        "US3000A",
        "US3000B",
        "US3000C",
        "US3000D",
        "US5000",
        "US5000B",
        "US5000C",
        "UP2500",
        "UP5000",
        "E-BOX-4850P",
        "E-BOX-48100V-D",
        "E-BOX-48100R",
        "Force_H1",
        "Force_H2",
        "Force_L1",
        "Force_L2",
        "CMU",
        "CMU_A",
        "BMU",
    )
)

# Messages of a rejected command (there is no completion line then).
_ERROR_PREFIXES = (
    "Unknown command",
    "Invalid command",
    "Command completed unccessfully",
    "Command completed unsuccessfully",
    "This version do not support",
)

_TOKEN = re.compile(r"\S+")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class _Bad(Exception):
    """A value that does not fit; the caller adds where it was found."""


# ---------------------------------------------------------------------------
# Text helpers


def _lines(text: str) -> List[str]:
    """The text split into lines, whatever mix of CR / LF ends them (blank lines kept)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _tokens(line: str) -> List[Tuple[int, str]]:
    return [(m.start(), m.group()) for m in _TOKEN.finditer(line)]


def _is_frame(stripped: str) -> bool:
    """Echo / prompt, ``@``, completion and ``$$`` lines: the framing around a payload."""
    if stripped in ("@", "$$") or stripped.startswith("Command completed"):
        return True
    head = stripped.split(None, 1)[0] if stripped else ""
    cut = head.find(">")
    # "pylon>", "PYTES>pwr", "pylon_debug>bat 1", ">pylon_debug>getpwr", "pylo_dbu>bat"
    return cut == 0 or (cut > 0 and head[:cut].replace("_", "").isalpha())


def is_error_reply(text: str) -> Optional[str]:
    """The battery's error message if the reply is a rejected command, else None.

    Recognises ``Unknown command 'soh' - try 'help'``, ``Invalid command or fail
    to excute.`` (or ``!``), ``Command completed unccessfully`` (sic) and
    ``This version do not support this command!``.
    """
    for line in _lines(text):
        stripped = line.strip()
        if stripped.startswith(_ERROR_PREFIXES):
            return stripped
    return None


def _reject_error_reply(text: str, what: str) -> None:
    message = is_error_reply(text)
    if message is not None:
        raise ParseError("%s: the battery rejected the command: %s" % (what, message))


def _echoed_args(lines: Sequence[str], before: int, command: str) -> Optional[List[str]]:
    """The arguments of the command echoed just above line ``before``, if an echo is there."""
    for index in range(before - 1, -1, -1):
        stripped = lines[index].strip()
        if not stripped or stripped == "@" or set(stripped) <= {"-"}:
            continue
        words = stripped[stripped.rfind(">") + 1 :].split()
        if words and words[0] == command:
            return words[1:]
        return None
    return None


def _check_echo(lines: Sequence[str], anchor: int, command: str, address: int, what: str) -> None:
    """A reply that prints its own address must match the address in the echo, if any."""
    args = _echoed_args(lines, anchor, command)
    if args and _is_plain_int(args[0]) and int(args[0]) != address:
        raise ParseError("%s: reply is for unit %d but the echo asked for %s" % (what, address, args[0]))


# ---------------------------------------------------------------------------
# Value converters: one token in, checked value out (``_Bad`` on failure).


def _is_plain_int(token: str) -> bool:
    digits = token[1:] if token.startswith("-") else token
    return digits.isascii() and digits.isdigit()


def _int(token: str) -> int:
    """A plain decimal integer as the console prints it: no sign but '-', no leading zeros."""
    digits = token[1:] if token.startswith("-") else token
    if not (digits.isascii() and digits.isdigit()):
        raise _Bad("%r is not a number" % token)
    if (len(digits) > 1 and digits[0] == "0") or token == "-0":
        raise _Bad("%r is not a plainly printed number" % token)
    return int(token)


def _in_range(value: float, limits: Tuple[float, float], what: str) -> float:
    if not limits[0] <= value <= limits[1]:
        raise _Bad("%s %g is outside %g..%g" % (what, value, limits[0], limits[1]))
    return value


def _index(token: str) -> int:
    value = _int(token)
    if value < 0:
        raise _Bad("%r is not an index" % token)
    return value


def _cell_id(token: str) -> int:
    value = _index(token)
    if value > 999:
        raise _Bad("cell index %d is impossible" % value)
    return value


def _pack_volts(token: str) -> float:
    return _in_range(_int(token) / 1000.0, PACK_VOLTS, "pack voltage")


def _cell_volts(token: str) -> float:
    return _in_range(_int(token) / 1000.0, CELL_VOLTS, "cell voltage")


def _amps(token: str) -> float:
    return _in_range(_int(token) / 1000.0, (-MAX_AMPS, MAX_AMPS), "current")


def _celsius(token: str) -> float:
    return _in_range(_int(token) / 1000.0, CELSIUS, "temperature")


def _amp_hours(token: str) -> float:
    return _in_range(_int(token) / 1000.0, (0.0, MAX_AMP_HOURS), "charge (Ah)")


def _count(token: str) -> int:
    value = _int(token)
    if value < 0:
        raise _Bad("%r is not a count" % token)
    return value


def _percent(token: str) -> float:
    if not token.endswith("%"):
        raise _Bad("%r is not a percentage" % token)
    return _in_range(float(_int(token[:-1])), PERCENT, "percentage")


def _one_edit_apart(a: str, b: str) -> bool:
    """True if ``a`` becomes ``b`` by deleting, inserting or replacing exactly one character."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(1 for x, y in zip(a, b) if x != y) == 1
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = 0
    while i < len(short) and short[i] == long_[i]:
        i += 1
    return short[i:] == long_[i + 1 :]


def _lost_characters(word: str, known: str) -> bool:
    """True if ``word`` is ``known`` with one or more characters lost (a proper subsequence)."""
    if len(word) >= len(known):
        return False
    rest = iter(known)
    return all(char in rest for char in word)


def _garbled(word: str, known: FrozenSet[str], changes: bool = True) -> bool:
    """True if ``word`` is not known but is a known word with characters lost, two known
    words run together (a lost space), or, if ``changes``, a known word with one
    character added or changed."""
    if word in known:
        return False
    for other in known:
        if _lost_characters(word, other) or (changes and _one_edit_apart(word, other)):
            return True
    return any(word[:i] in known and word[i:] in known for i in range(1, len(word)))


def _state(token: str) -> str:
    if token in STATE_WORDS:
        return token
    if not (token.isascii() and token.isalpha()):
        raise _Bad("%r is not a state word" % token)
    if _garbled(token, STATE_WORDS):  # also a word cut short: a prefix is a subsequence
        raise _Bad("%r is a garbled or cut state word" % token)
    logger.debug("state word %r not seen before", token)
    return token


def _flag(token: str) -> bool:
    if token not in ("Y", "N"):
        raise _Bad("%r is not Y or N" % token)
    return token == "Y"


def _text_value(value: str) -> Optional[str]:
    """A printed text value; empty is unknown (US3000D prints ``Board version :`` empty)."""
    value = " ".join(value.split())
    if not value:
        return None
    if not (value.isascii() and value.isprintable()):
        raise _Bad("%r has unprintable characters" % value)
    return value


def _optional(convert: Callable[[str], object]) -> Callable[[str], object]:
    """``-`` (unknown, e.g. MosTempr on units without a sensor) as None, else ``convert``."""

    def read(token: str) -> object:
        return None if token == "-" else convert(token)

    return read


def _is_date(text: str) -> bool:
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    digits = text[:4] + text[5:7] + text[8:]
    if not (digits.isascii() and digits.isdigit()):
        return False
    month, day = int(text[5:7]), int(text[8:])
    return 1 <= month <= 12 and 1 <= day <= 31


def _is_clock(text: str) -> bool:
    if len(text) != 8 or text[2] != ":" or text[5] != ":":
        return False
    digits = text[:2] + text[3:5] + text[6:]
    if not (digits.isascii() and digits.isdigit()):
        return False
    return int(text[:2]) <= 23 and int(text[3:5]) <= 59 and int(text[6:]) <= 59


def parse_number(token: str) -> int:
    """An event / alarm word: ``0x2000``, ``8192`` or ``0x2000 COULFULL`` (names after it ignored).

    Raises ParseError if the number is neither hexadecimal (``0x``) nor decimal,
    or if what follows it is not a symbolic name.
    """
    words = token.split()
    if not words:
        raise ParseError("event word: empty")
    head = words[0]
    if head[:2] in ("0x", "0X"):
        digits = head[2:]
        if not digits or not set(digits) <= _HEX_DIGITS:
            raise ParseError("event word: %r is not a hexadecimal number" % token)
        value = int(digits, 16)
    elif head.isascii() and head.isdigit():
        value = int(head)
    else:
        raise ParseError("event word: %r is neither hexadecimal nor decimal" % token)
    for name in words[1:]:
        if not (name.replace("_", "").isalnum() and name.isascii() and any(c.isalpha() for c in name)):
            raise ParseError("event word: %r after the number is not a name" % name)
    return value


# ---------------------------------------------------------------------------
# Tables (pwr, bat)


class _Row:
    """The tokens of one table row, handed out left to right."""

    __slots__ = ("tokens", "next")

    def __init__(self, line: str) -> None:
        self.tokens = _tokens(line)
        self.next = 0

    def start(self) -> int:
        if self.next >= len(self.tokens):
            raise _Bad("row ends before the last column")
        return self.tokens[self.next][0]

    def take(self) -> str:
        if self.next >= len(self.tokens):
            raise _Bad("row ends before the last column")
        token = self.tokens[self.next][1]
        self.next += 1
        return token

    def take_unit(self, unit: str) -> None:
        token = self.take()
        if token.lower() != unit.lower():
            raise _Bad("unit %r where %s belongs" % (token, unit))

    def take_optional_unit(self, unit: str) -> None:
        if self.next < len(self.tokens) and self.tokens[self.next][1].lower() == unit.lower():
            self.next += 1


Reader = Callable[[_Row], Tuple[object, ...]]

# Field name meaning "keep this column's printed tokens in ``extra`` under its header name".
_EXTRA = "extra"


class _Spec:
    """How to read one column: its record fields (None = checked, then dropped) and value shape.

    Where its first token may start (its offset from the header name): columns
    before the first ``loose`` one start exactly under their header name.  A
    loose column (right-aligned values, or values whose width moves the rest of
    the row) and every column after it may start ``low`` characters left of
    its header and ``back`` characters left of the previous column's offset;
    both are 0 except where real firmware prints that way.
    """

    __slots__ = ("fields", "read", "loose", "low", "back")

    def __init__(self, fields: Tuple[Optional[str], ...], read: Reader, loose: bool = False, low: int = 0, back: int = 0) -> None:
        self.fields = fields
        self.read = read
        self.loose = loose
        self.low = low
        self.back = back


def _single(field: Optional[str], convert: Callable[[str], object], loose: bool = False, low: int = 0, back: int = 0) -> _Spec:
    def read(row: _Row) -> Tuple[object, ...]:
        return (convert(row.take()),)

    return _Spec((field,), read, loose, low, back)


def _read_time(row: _Row) -> Tuple[object, ...]:
    date, clock = row.take(), row.take()
    if not (_is_date(date) and _is_clock(clock)):
        raise _Bad("%r %r is not a YYYY-MM-DD hh:mm:ss time" % (date, clock))
    return (date + " " + clock,)


def _read_pct_mah(row: _Row) -> Tuple[object, ...]:
    """``89%  42586 mAH``: SoC and charge (bat variants B/C, Force ``CoulombAH``)."""
    soc = _percent(row.take())
    charge = _amp_hours(row.take())
    row.take_unit("mAH")
    return (soc, charge)


_CHARGE_UNITS = {"mah": 1000.0, "ah": 1.0}  # a bat table's Coulomb unit -> per Ah


def _read_cell_charge(row: _Row) -> Tuple[object, object]:
    """A bat ``Coulomb`` that carries its own unit, with or without a SoC before it:
    ``89%  42586 mAH``, ``11500 mAH`` (older firmware) or the same in ``AH``: (SoC or None, Ah)."""
    token = row.take()
    soc = None
    if token.endswith("%"):
        soc = _percent(token)
        token = row.take()
    number = _int(token)
    unit = row.take()
    scale = _CHARGE_UNITS.get(unit.lower())
    if scale is None:
        raise _Bad("unit %r after %s where mAH or AH belongs" % (unit, token))
    return (soc, _in_range(number / scale, (0.0, MAX_AMP_HOURS), "charge (Ah)"))


def _read_cell_charge_after_soc(row: _Row) -> Tuple[object, ...]:
    """The same beside a SOC column: its own percentage, if printed, is checked and dropped."""
    return (_read_cell_charge(row)[1],)


def _read_force_cell_ah(row: _Row) -> Tuple[object, ...]:
    """Force ``AH(mAH)``: ``17%    12580`` (some firmware adds ``mAH``)."""
    soc = _percent(row.take())
    charge = _amp_hours(row.take())
    row.take_optional_unit("mAH")
    return (soc, charge)


def _read_force_cell_wh(row: _Row) -> Tuple[object, ...]:
    """Force ``WH(mWH)``: ``17%        40256`` (checked, kept as printed)."""
    _percent(row.take())
    _count(row.take())
    row.take_optional_unit("mWH")
    return (None,)


def _read_force_wh(row: _Row) -> Tuple[object, ...]:
    """Force ``pwr`` ``CoulombWH``: ``84%  11903117 mWH`` or ``13%  2290 WH`` (checked, dropped)."""
    _percent(row.take())
    _count(row.take())
    unit = row.take()
    if unit not in ("WH", "mWH"):
        raise _Bad("unit %r where WH or mWH belongs" % unit)
    return (None,)


def _read_event(row: _Row) -> Tuple[object, ...]:
    token = row.take()
    try:
        return (parse_number(token),)
    except ParseError as exc:
        raise _Bad(str(exc)) from None


_PWR_COLUMNS = {
    "Power": _single("address", _index),
    "Volt": _single("voltage", _pack_volts),
    "Curr": _single("current", _amps),
    "Tempr": _single("temperature", _celsius),
    "Tlow": _single("cell_temp_low", _celsius),
    "Thigh": _single("cell_temp_high", _celsius),
    "Tlow.Id": _single("cell_temp_low_id", _cell_id),
    "Thigh.Id": _single("cell_temp_high_id", _cell_id),
    "Vlow": _single("cell_voltage_low", _cell_volts),
    "Vhigh": _single("cell_voltage_high", _cell_volts),
    "Vlow.Id": _single("cell_voltage_low_id", _cell_id),
    "Vhigh.Id": _single("cell_voltage_high_id", _cell_id),
    "Base.St": _single("base_state", _state),
    "Volt.St": _single("voltage_state", _state),
    "Curr.St": _single("current_state", _state),
    "Temp.St": _single("temperature_state", _state),
    "Coulomb": _single("soc", _percent),
    "Time": _Spec(("time",), _read_time),
    "B.V.St": _single("battery_voltage_state", _state),
    "B.T.St": _single("battery_temperature_state", _state),
    # B67-B69 firmware prints MosTempr / M.T.St values one character left of
    # their header (the "-" placeholder sits under it); M.T.St must then keep
    # MosTempr's offset, so a digit lost in MosTempr is still caught.
    "MosTempr": _single("mos_temperature", _optional(_celsius), loose=True, low=-1, back=1),
    "M.T.St": _single("mos_temperature_state", _optional(_state), loose=True, low=-1),
    "SysAlarm.St": _single("system_alarm_state", _state),
    "Barcode": _single("barcode", _optional(_text_value)),
    "DevType": _single("device_type", _optional(_text_value)),
    # Force HV system row.  PowerRow has no fields for the unit (BMU) extremes,
    # the charge in mAh / Wh or the error code: they are checked, then dropped.
    "BTlow": _single("cell_temp_low", _celsius),
    "BThigh": _single("cell_temp_high", _celsius),
    "BVlow": _single("cell_voltage_low", _cell_volts),
    "BVhigh": _single("cell_voltage_high", _cell_volts),
    "UTlow": _single(None, _celsius),
    "UThigh": _single(None, _celsius),
    "UVlow": _single(None, _pack_volts),
    "UVhigh": _single(None, _pack_volts),
    # CoulombAH's percentage is right-aligned, CoulombWH's left-aligned; a long
    # CoulombWH moves the rest of the row right.
    "CoulombAH": _Spec(("soc", None), _read_pct_mah, loose=True),
    "CoulombWH": _Spec((None,), _read_force_wh, loose=True, back=2),
    "U.V.St": _single(None, _state),
    "U.T.St": _single(None, _state),
    "Err Code": _Spec((None,), _read_event),
}

_BAT_COLUMNS = {
    "Battery": _single("index", _index),
    "Bat": _single("index", _index),
    "Volt": _single("voltage", _cell_volts),
    "Curr": _single("current", _amps),
    "Tempr": _single("temperature", _celsius),
    "Base State": _single("base_state", _state),
    "Volt. State": _single("voltage_state", _state),
    "V.State": _single("voltage_state", _state),
    "Curr. State": _single("current_state", _state),
    "Temp. State": _single("temperature_state", _state),
    "T.State": _single("temperature_state", _state),
    "DTemp. State": _single(_EXTRA, _state),
    "CTemp. State": _single(_EXTRA, _state),
    # Right-aligned percentages (' 9%' vs '17%', '100%') move what follows.
    "SOC": _single("soc", _percent, loose=True),
    # Without a SOC column the Coulomb column carries "NN%  NNNNN mAH" (older firmware: "NNNNN mAH").
    "Coulomb": _Spec(("soc", "coulomb"), _read_cell_charge, loose=True),
    "BAL": _single("balancing", _flag, loose=True, back=1),
    "Bal": _single("balancing", _flag, loose=True, back=1),
    "AH(mAH)": _Spec(("soc", "coulomb"), _read_force_cell_ah, loose=True),
    "WH(mWH)": _Spec((_EXTRA,), _read_force_cell_wh, loose=True, back=1),
}
# With a SOC column: "44628 mAH", right-aligned, one place left of its header
# when the SOC has two digits.
_BAT_COULOMB_AFTER_SOC = _Spec(("coulomb",), _read_cell_charge_after_soc, loose=True, low=-1, back=2)


class _Column:
    __slots__ = ("name", "start", "spec")

    def __init__(self, name: str, start: int, spec: _Spec) -> None:
        self.name = name
        self.start = start
        self.spec = spec


def _header_columns(line: str, catalogue: Dict[str, _Spec], where: str) -> List[_Column]:
    tokens = _tokens(line)
    columns = []  # type: List[_Column]
    i = 0
    while i < len(tokens):
        start, name = tokens[i]
        if i + 1 < len(tokens) and name + " " + tokens[i + 1][1] in catalogue:
            name = name + " " + tokens[i + 1][1]
            i += 1
        i += 1
        if name not in catalogue:
            raise ParseError("%s: unknown column %r in the header" % (where, name))
        if any(column.name == name for column in columns):
            raise ParseError("%s: column %r twice in the header" % (where, name))
        columns.append(_Column(name, start, catalogue[name]))
    return columns


def _check_distinct_fields(columns: Sequence[_Column], where: str) -> None:
    """Two columns filling one field, or named one letter apart, are a garbled header.

    A Force "UTlow" that lost its U reads "Tlow" (BTlow's field); a "DTemp. State"
    that lost its D reads "Temp. State" next to "CTemp. State".
    """
    for i, column in enumerate(columns):
        for other in columns[i + 1 :]:
            if abs(len(column.name) - len(other.name)) == 1 and _one_edit_apart(column.name, other.name):
                raise ParseError("%s: columns %r and %r in one header" % (where, column.name, other.name))
    seen = {}  # type: Dict[str, str]
    for column in columns:
        for field in column.spec.fields:
            if field is None or field == _EXTRA:
                continue
            if field in seen:
                raise ParseError("%s: columns %r and %r in one header" % (where, seen[field], column.name))
            seen[field] = column.name


def _find_table(lines: Sequence[str], is_header: Callable[[List[str]], bool], what: str) -> int:
    found = [i for i, line in enumerate(lines) if is_header(line.split())]
    if not found:
        raise ParseError("%s: no table header in the reply" % what)
    if len(found) > 1:
        raise ParseError("%s: %d table headers in one reply (replies run together?)" % (what, len(found)))
    return found[0]


def _table_rows(lines: Sequence[str], header: int) -> List[Tuple[int, str]]:
    """The lines after the header up to the framing (completion line, ``$$``, prompt)."""
    rows = []
    for index in range(header + 1, len(lines)):
        stripped = lines[index].strip()
        if not stripped:
            continue
        if _is_frame(stripped):
            break
        rows.append((index, lines[index]))
    return rows


Span = Tuple[int, int]


def _read_row(line: str, columns: Sequence[_Column]) -> Tuple[Dict[str, object], Dict[str, str], List[Span]]:
    """Hand a row's tokens to the columns; return (record fields, extra columns, and the
    (start, end) of each token from the first loose column on)."""
    row = _Row(line)
    fields = {}  # type: Dict[str, object]
    extra = {}  # type: Dict[str, str]
    previous = 0
    loose = False
    first_loose = len(row.tokens)
    for column in columns:
        spec = column.spec
        offset = row.start() - column.start
        if spec.loose and not loose:
            loose, first_loose = True, row.next
        misplaced = (offset < spec.low or offset < previous - spec.back) if loose else offset != 0
        if misplaced:
            raise _Bad("column %s starts %d character(s) off its header (dropped character?)" % (column.name, offset))
        previous = offset
        first = row.next
        try:
            values = spec.read(row)
        except _Bad as exc:
            raise _Bad("column %s: %s" % (column.name, exc)) from None
        for field, value in zip(spec.fields, values):
            if field == _EXTRA:
                extra[column.name] = " ".join(token for _, token in row.tokens[first : row.next])
            elif field is not None:
                fields[field] = value
    if row.next != len(row.tokens):
        raise _Bad("%d value(s) more than the header has columns" % (len(row.tokens) - row.next))
    return fields, extra, [(start, start + len(token)) for start, token in row.tokens[first_loose:]]


def _check_loose_spacing(rows: Sequence[Tuple[int, List[Span]]], what: str) -> None:
    """From the first loose column on, two neighbouring tokens keep the same distance in every
    row: between their starts where the values are left-aligned, between their ends where
    they are right-aligned.  A character lost inside one of them changes that distance in its
    row.  (A table of one row cannot show it.)"""
    if len(rows) < 2:
        return
    if len({len(spans) for _, spans in rows}) != 1:
        raise ParseError("%s: rows end in different shapes (dropped character?)" % what)
    for pair in range(len(rows[0][1]) - 1):
        starts = {spans[pair + 1][0] - spans[pair][0] for _, spans in rows}
        ends = {spans[pair + 1][1] - spans[pair][1] for _, spans in rows}
        if len(starts) > 1 and len(ends) > 1:
            raise ParseError(
                "%s: the right-hand values of lines %d-%d are not spaced alike "
                "(dropped character?)" % (what, rows[0][0] + 1, rows[-1][0] + 1)
            )


def _is_pwr_header(words: List[str]) -> bool:
    return words[:2] == ["Power", "Volt"] or words[:4] == ["Volt", "Curr", "Tempr", "BTlow"]


def _absent_row(line: str) -> Optional[int]:
    """The address of an ``Absent`` slot (old 16-field layout under any header), else None."""
    words = line.split()
    if "Absent" not in words[1:]:
        return None
    rest = words[1:]
    if rest.count("Absent") != 1 or any(word not in ("-", "Absent") for word in rest):
        raise _Bad("Absent row with values in it")
    return _index(words[0])


def _lines_up_with_header(columns: Sequence[_Column], absent_line: str) -> bool:
    """An Absent row keeps the old layout (``_OLD_PWR_HEADER``, plus Pytes' Barcode and
    DevType): as far as the header has the same columns, they start where the Absent
    row's tokens do, unless a character was lost in one of the two lines."""
    old_layout = _OLD_PWR_HEADER + ("Barcode", "DevType")
    for column, name, (start, _) in zip(columns, old_layout, _tokens(absent_line)):
        if column.name != name:
            break
        if column.start != start:
            return False
    return True


def _check_unit_row(fields: Dict[str, object]) -> None:
    """Physical consistency of one present unit's row."""
    low, high = fields.get("cell_voltage_low"), fields.get("cell_voltage_high")
    if isinstance(low, float) and isinstance(high, float):
        if low > high:
            raise _Bad("lowest cell voltage above the highest")
        series = fields["voltage"] / ((low + high) / 2.0)  # type: ignore[operator]
        if not SERIES_CELLS[0] <= series <= SERIES_CELLS[1]:
            raise _Bad("pack voltage does not fit its cell voltages")
    low, high = fields.get("cell_temp_low"), fields.get("cell_temp_high")
    if isinstance(low, float) and isinstance(high, float) and low > high:
        raise _Bad("lowest cell temperature above the highest")


def _check_hv_voltage(lines: Sequence[str], header: int, rows: Sequence[PowerRow], what: str) -> None:
    """Force prints the pack voltage twice: ``Bat Volt : 301440`` above the table must agree."""
    for index in range(header):
        key, colon, value = lines[index].partition(":")
        if colon and " ".join(key.split()) == "Bat Volt":
            try:
                volts = _single_word(_pack_volts)(value)
            except _Bad as exc:
                raise ParseError("%s line %d: Bat Volt: %s" % (what, index + 1, exc)) from None
            if rows and rows[0].voltage is not None and abs(rows[0].voltage - volts) > 0.05 * volts:  # type: ignore
                raise ParseError(
                    "%s: system row voltage %g V does not fit Bat Volt %g V (dropped digit?)" % (what, rows[0].voltage, volts)
                )


def parse_power_table(text: str, complete: bool = True) -> List[PowerRow]:
    """``pwr`` (the whole bank): one PowerRow per address slot; Absent slots have present=False.

    Force HV systems print one system row; it is returned as address 1.  ``complete`` False:
    the lines of a table still arriving (any number of its first rows).
    """
    what = "pwr"
    _reject_error_reply(text, what)
    lines = _lines(text)
    header = _find_table(lines, _is_pwr_header, what)
    where = "%s line %d" % (what, header + 1)
    columns = _header_columns(lines[header], _PWR_COLUMNS, where)
    _check_distinct_fields(columns, where)
    names = {column.name for column in columns}
    hv_system = "Power" not in names
    required = {"Volt", "Curr", "Base.St"} | ({"CoulombAH"} if hv_system else {"Power", "Coulomb"})
    if not required <= names:
        raise ParseError("%s: header lacks %s" % (where, ", ".join(sorted(required - names))))

    result = []  # type: List[PowerRow]
    absent_lines = []  # type: List[str]
    loose_spans = []  # type: List[Tuple[int, List[Span]]]
    for index, line in _table_rows(lines, header):
        try:
            address = None if hv_system else _absent_row(line)
            if address is not None:
                absent_lines.append(line)
                result.append(PowerRow(address=address, present=False))
                continue
            fields, _, spans = _read_row(line, columns)
            _check_unit_row(fields)
            loose_spans.append((index, spans))
        except _Bad as exc:
            raise ParseError("%s line %d: %s: %r" % (what, index + 1, exc, line.strip())) from None
        if hv_system:
            fields["address"] = 1
        result.append(PowerRow(present=True, **fields))  # type: ignore[arg-type]

    # A character lost in the header moves its later names left, and a lost digit in a
    # single present row could move that row's tokens along; Absent rows show where the
    # header's columns really are.  One that lines up is enough (another may have lost
    # a character of its own, which does not matter).
    if absent_lines and not any(_lines_up_with_header(columns, line) for line in absent_lines):
        raise ParseError("%s: the header does not line up with any Absent row (dropped character?)" % where)
    _check_loose_spacing(loose_spans, what)
    addresses = [row.address for row in result]
    if addresses != list(range(1, len(result) + 1)):
        raise ParseError("%s: rows are numbered %s, not 1..%d" % (what, addresses, len(result)))
    if hv_system:
        if len(result) != 1:
            raise ParseError("%s: HV system table has %d rows, not 1" % (what, len(result)))
        _check_hv_voltage(lines, header, result, what)
    else:
        slots = PWR_SLOTS if tuple(column.name for column in columns) == _OLD_PWR_HEADER else (MAX_UNITS,)
        # US3000D (cell-index columns, no SysAlarm.St) lists present units only
        present_only = (
            "Tlow.Id" in names and "SysAlarm.St" not in names and len(result) <= MAX_UNITS and all(row.present for row in result)
        )
        if complete and len(result) not in slots and not present_only:
            raise ParseError(
                "%s: %d rows (table cut short?); expected %s" % (what, len(result), " or ".join(str(n) for n in slots))
            )
    if not result:
        raise ParseError("%s: table has no rows" % what)
    return result


def _is_bat_header(words: List[str]) -> bool:
    return len(words) > 2 and words[0] in ("Battery", "Bat") and words[1] == "Volt"


def _check_cell_charges(cells: Sequence[CellRow], what: str) -> None:
    """Each cell's Ah must fit its SoC and the others' capacity (a lost digit changes it ~10x).

    The capacity is the median of Ah / SoC over the cells at 5 % or more; a
    cell's Ah must then lie within [0.6 p - 1, 1.6 p + 1] % of it for its SoC p
    (wide enough for rounding and unequal cells, narrow enough for ``19%`` ->
    ``9%``).
    """
    charged = [cell for cell in cells if cell.coulomb is not None and cell.soc is not None]
    estimates = sorted(
        cell.coulomb * 100.0 / cell.soc
        for cell in charged  # type: ignore[operator]
        if cell.soc >= 5.0 and cell.coulomb > 0.0
    )  # type: ignore[operator]
    if len(estimates) < 3:
        return
    capacity = estimates[len(estimates) // 2]
    for cell in charged:
        soc = cell.soc  # type: float  # type: ignore[assignment]
        percent = cell.coulomb * 100.0 / capacity  # type: ignore[operator]
        if not 0.6 * soc - 1.0 <= percent <= 1.6 * soc + 1.0:
            raise ParseError(
                "%s: cell %d: %.3f Ah at %g %% does not fit the other cells' %.1f Ah "
                "(dropped digit?)" % (what, cell.index, cell.coulomb, soc, capacity)
            )


def _check_cell_energy(cell: CellRow, what: str) -> None:
    """Force ``WH(mWH)`` (kept as printed in extra) must fit the same cell's AH(mAH)."""
    printed = cell.extra.get("WH(mWH)")
    if printed is None or not cell.coulomb or cell.soc is None:
        return
    words = printed.split()
    percent, milli_wh = float(words[0][:-1]), int(words[1])
    volts = milli_wh / (cell.coulomb * 1000.0)
    if not (2.0 <= volts <= 4.5 and 0.6 * cell.soc - 2.0 <= percent <= 1.6 * cell.soc + 2.0):
        raise ParseError("%s: cell %d: WH(mWH) %r does not fit AH(mAH) (dropped digit?)" % (what, cell.index, printed))


def parse_cell_table(text: str, address: int, cells: Optional[int] = None) -> CellTable:
    """``bat N``: every cell of unit ``address``, indices 0..n-1 without gaps.

    ``cells``: the unit's cell count when known (``info`` Cell Number); a table
    with another count raises.  Without it a low-voltage table must have 15 or
    16 cells, a Force HV table any number: a table cut between two rows is then
    only caught when fewer than 15 rows are left.

    A coulomb printed as 0 while the cell's SoC is above 0 (masters that do not
    relay a slave's coulomb) is unknown: None.
    """
    what = "bat %d" % address
    _reject_error_reply(text, what)
    lines = _lines(text)
    header = _find_table(lines, _is_bat_header, what)
    where = "%s line %d" % (what, header + 1)
    _check_echo(lines, header, "bat", address, what)
    columns = _header_columns(lines[header], _BAT_COLUMNS, where)
    names = [column.name for column in columns]
    if "SOC" in names:
        for column in columns:
            if column.name == "Coulomb":
                column.spec = _BAT_COULOMB_AFTER_SOC
    _check_distinct_fields(columns, where)
    if "Volt" not in names:
        raise ParseError("%s: header lacks Volt" % where)
    hv_system = names[0] == "Bat"

    rows = []  # type: List[CellRow]
    loose_spans = []  # type: List[Tuple[int, List[Span]]]
    for index, line in _table_rows(lines, header):
        try:
            fields, extra, spans = _read_row(line, columns)
        except _Bad as exc:
            raise ParseError("%s line %d: %s: %r" % (what, index + 1, exc, line.strip())) from None
        if fields.get("coulomb") == 0.0 and (fields.get("soc") or 0.0) > 0.0:
            fields["coulomb"] = None
        cell = CellRow(extra=extra, **fields)  # type: ignore[arg-type]
        _check_cell_energy(cell, what)
        rows.append(cell)
        loose_spans.append((index, spans))

    indices = [cell.index for cell in rows]
    if indices != list(range(len(rows))):
        raise ParseError("%s: cells are numbered %s, not 0..%d" % (what, indices, len(rows) - 1))
    if cells is not None:
        if len(rows) != cells:
            raise ParseError("%s: %d cells where the unit has %d (table cut short?)" % (what, len(rows), cells))
    elif not rows or (not hv_system and len(rows) not in LV_CELL_COUNTS):
        raise ParseError("%s: %d cells (table cut short?)" % (what, len(rows)))
    _check_loose_spacing(loose_spans, what)
    _check_cell_charges(rows, what)
    return CellTable(address=address, cells=tuple(rows))


# ---------------------------------------------------------------------------
# Key : value blocks (pwr N, info, stat)


class _Entry:
    """One ``key : value`` line: key with single spaces, value stripped, and the raw line."""

    __slots__ = ("lineno", "key", "value", "line")

    def __init__(self, lineno: int, key: str, value: str, line: str) -> None:
        self.lineno = lineno
        self.key = key
        self.value = value
        self.line = line


def _find_anchor(lines: Sequence[str], is_anchor: Callable[[List[str]], bool], what: str, name: str) -> int:
    found = [i for i, line in enumerate(lines) if is_anchor(line.split())]
    if not found:
        raise ParseError("%s: no %s line in the reply" % (what, name))
    if len(found) > 1:
        raise ParseError("%s: %d %s lines in one reply (replies run together?)" % (what, len(found), name))
    return found[0]


def _heading(stripped: str) -> Optional[str]:
    """Force ``info`` section headings (``BMU 4 Barcode``, ``Unit 1 Barcode``), else None."""
    words = stripped.split()
    return " ".join(words) if len(words) >= 2 and words[-1] == "Barcode" else None


def _entries(lines: Sequence[str], start: int, what: str, closing_rule: bool = False) -> List[_Entry]:
    """``key : value`` lines from ``start`` to the framing; a line without ':' is an error.

    ``closing_rule``: the block ends with a ``-----`` rule (``pwr N``); a block
    without it was cut short.
    """
    entries = []  # type: List[_Entry]
    keys = set()
    section = ""
    closed = False
    for index in range(start, len(lines)):
        line = lines[index]
        stripped = line.strip()
        if not stripped:
            continue
        if _is_frame(stripped):
            break
        if set(stripped) <= {"-"}:
            closed = bool(entries)
            if closed and closing_rule:
                break
            continue
        if ":" not in stripped:
            heading = _heading(stripped)
            if heading is None:
                raise ParseError("%s line %d: not a 'key : value' line: %r" % (what, index + 1, stripped))
            section = heading + " "
            continue
        key, _, value = stripped.partition(":")
        key = section + " ".join(key.split())
        value = value.strip()
        if value.startswith(":"):  # Force "Module:   : P22..."
            value = value[1:].strip()
        if not key.strip():
            raise ParseError("%s line %d: value without a key: %r" % (what, index + 1, stripped))
        if ": " in value or " :" in value:  # a lost line end glued the next line on
            raise ParseError("%s line %d: two lines run together: %r" % (what, index + 1, stripped))
        if key in keys:
            raise ParseError("%s line %d: %r twice (replies run together?)" % (what, index + 1, key))
        keys.add(key)
        entries.append(_Entry(index + 1, key, value, line))
    if closing_rule and not closed:
        raise ParseError("%s: block ends without its closing rule (cut short?)" % what)
    return entries


def _convert_entry(entry: _Entry, convert: Callable[[str], object], what: str) -> object:
    try:
        return convert(entry.value)
    except (_Bad, ParseError) as exc:
        raise ParseError("%s line %d: %s: %s" % (what, entry.lineno, entry.key, exc)) from None


def _with_unit(convert: Callable[[str], object], *units: str) -> Callable[[str], object]:
    """``49769       mV``: a number followed by one of ``units`` (case-insensitive)."""
    wanted = tuple(unit.lower() for unit in units)

    def read(value: str) -> object:
        words = value.split()
        if len(words) != 2 or words[1].lower() not in wanted:
            raise _Bad("%r is not a number in %s" % (value, "/".join(units)))
        return convert(words[0])

    return read


def _total_capacity(value: str) -> float:
    """``Total Coulomb``: ``50000 mAH`` or, on Pytes V5, ``360000000 mAS`` (milliamp-seconds)."""
    words = value.split()
    if len(words) == 2 and words[1].lower() == "mas":
        ah = _count(words[0]) / 3600000.0
    elif len(words) == 2 and words[1].lower() == "mah":
        ah = _count(words[0]) / 1000.0
    else:
        raise _Bad("%r is not a charge in mAH or mAS" % value)
    if not 0.0 < ah <= MAX_AMP_HOURS:
        raise _Bad("capacity %g Ah is impossible" % ah)
    return ah


def _single_word(convert: Callable[[str], object]) -> Callable[[str], object]:
    def read(value: str) -> object:
        words = value.split()
        if len(words) != 1:
            raise _Bad("%r is not one value" % value)
        return convert(words[0])

    return read


def _protect_list(value: str) -> Tuple[str, ...]:
    words = tuple(value.split())
    for word in words:
        if not (word.isascii() and word.isalnum() and word.upper() == word) or _garbled(word, PROTECTION_NAMES, changes=False):
            raise _Bad("%r is not a protection name" % word)
    if len(set(words)) != len(words):
        raise _Bad("a protection name twice (garbled %r?)" % value)
    return words


_DETAIL_UNITS = frozenset(("mv", "ma", "mc", "%", "mah", "mas", "as"))

_DETAIL_KEYS = {
    "Voltage": ("voltage", _with_unit(_pack_volts, "mV")),
    "Current": ("current", _with_unit(_amps, "mA")),
    "Temperature": ("temperature", _with_unit(_celsius, "mC")),
    "Coulomb": ("soc", _with_unit(lambda token: _percent(token + "%"), "%")),
    "Total Coulomb": ("total_capacity", _total_capacity),
    "Max Voltage": ("max_voltage", _with_unit(_pack_volts, "mV")),
    "Charge Times": ("charge_times", _single_word(_count)),
    "Basic Status": ("base_state", _single_word(_state)),
    "Volt Status": ("voltage_state", _single_word(_state)),
    "Current Status": ("current_state", _single_word(_state)),
    "Tmpr. Status": ("temperature_state", _single_word(_state)),
    "Coul. Status": ("coulomb_state", _single_word(_state)),
    "Soh. Status": ("soh_state", _single_word(_state)),
    "Heater Status": ("heater_state", _single_word(_state)),
    "Protect ENA": ("protect_enabled", _protect_list),
    "Bat Events": ("bat_events", parse_number),
    "Power Events": ("power_events", parse_number),
    "System Fault": ("system_fault", parse_number),
}  # type: Dict[str, Tuple[str, Callable[[str], object]]]
_DETAIL_REQUIRED = ("Voltage", "Current", "Coulomb")


def _check_unit_column(entries: Sequence[_Entry], what: str) -> None:
    """All units (mV, mA, mC, %, mAH ...) are printed in one column; a lost character moves one."""
    placed = []  # type: List[Tuple[int, _Entry]]
    for entry in entries:
        tokens = _tokens(entry.line)
        if len(tokens) >= 2 and tokens[-1][1].lower() in _DETAIL_UNITS and ":" in entry.line[: tokens[-2][0]]:
            placed.append((tokens[-1][0], entry))
    columns = [column for column, _ in placed]
    usual = max(set(columns), key=columns.count) if columns else None
    for column, entry in placed:
        if column != usual:
            raise ParseError(
                "%s line %d: %s: unit not in the units column (dropped character?)" % (what, entry.lineno, entry.key)
            )


_DETAIL_EVENTS = ("Bat Events", "Power Events", "System Fault")


def _field_end(entry: _Entry) -> Optional[int]:
    """Where the console's padded value field ends: the start of a name after the value
    (``0x2000     COULFULL``), else the end of the trailing padding; None if stripped."""
    tokens = _tokens(entry.line)
    value_at = [i for i, (start, _) in enumerate(tokens) if ":" in entry.line[:start]]
    if not value_at:
        return None
    first = value_at[0]
    if first + 1 < len(tokens):
        return tokens[first + 1][0]
    return len(entry.line) if entry.line.endswith(" ") else None


def _check_padded_fields(entries: Sequence[_Entry], what: str) -> None:
    """Values without a unit are still printed in fixed-width fields.  Where the console's
    padding is there, a lost character shows as a field one shorter than its kind's.

    Counts (``Charge Times``) end where the units column starts or where the other
    unit-less counts end; the three event words end together.
    """
    units = [start for entry in entries for start, token in _tokens(entry.line)[-1:] if token.lower() in _DETAIL_UNITS]
    counts = [entry for entry in entries if _is_plain_int(entry.value)]
    events = [entry for entry in entries if entry.key in _DETAIL_EVENTS]
    for group, anchors in ((counts, set(units[:1])), (events, set())):
        ends = [(entry, _field_end(entry)) for entry in group]
        for entry, end in ends:
            if end is None or entry.key not in _DETAIL_KEYS:
                continue
            others = anchors | {other_end for other, other_end in ends if other is not entry and other_end is not None}
            if others and end not in others:
                raise ParseError(
                    "%s line %d: %s: value field is not as wide as its kind's "
                    "(dropped character?)" % (what, entry.lineno, entry.key)
                )


def parse_power_detail(text: str) -> PowerDetail:
    """``pwr N``: the key : value detail of one unit."""
    what = "pwr N"
    _reject_error_reply(text, what)
    lines = _lines(text)
    anchor = _find_anchor(
        lines, lambda words: len(words) == 2 and words[0] == "Power" and _is_plain_int(words[1]), what, "'Power N'"
    )
    address = int(lines[anchor].split()[1])
    what = "pwr %d" % address
    _check_echo(lines, anchor, "pwr", address, what)
    entries = _entries(lines, anchor + 1, what, closing_rule=True)
    _check_unit_column(entries, what)
    _check_padded_fields(entries, what)

    fields = {}  # type: Dict[str, object]
    extra = {}  # type: Dict[str, str]
    for entry in entries:
        known = _DETAIL_KEYS.get(entry.key)
        if known is None:
            extra[entry.key] = " ".join(entry.value.split())
        else:
            fields[known[0]] = _convert_entry(entry, known[1], what)
    missing = [key for key in _DETAIL_REQUIRED if _DETAIL_KEYS[key][0] not in fields]
    if missing:
        raise ParseError("%s: no %s line" % (what, ", ".join(missing)))
    return PowerDetail(address=address, extra=extra, **fields)  # type: ignore[arg-type]


def _is_device_address(words: List[str]) -> bool:
    return words[:2] == ["Device", "address"]


def _address_of(line: str, what: str, lineno: int, colon: bool) -> int:
    """``Device address      : 1`` (info, ``colon``) or ``Device address           1`` (stat)."""
    key, found, value = line.partition(":")
    words = key.split()
    if colon:
        valid = bool(found) and words == ["Device", "address"]
    else:
        valid, value = not found and len(words) == 3, " ".join(words[2:])
    try:
        if not valid:
            raise _Bad("%r is not a Device address line" % line.strip())
        return _single_word(_index)(value)  # type: ignore[return-value]
    except _Bad as exc:
        raise ParseError("%s line %d: %s" % (what, lineno, exc)) from None


def _specification(value: str) -> Tuple[float, float]:
    """``48V/50AH``, ``51.2V/100AH`` -> (48.0, 50.0): rated volts and ampere-hours."""
    volts, slash, amp_hours = value.strip().partition("/")
    if not slash or volts[-1:].upper() != "V" or amp_hours[-2:].upper() != "AH":
        raise _Bad("%r is not like 48V/50AH" % value)
    numbers = []
    for number in (volts[:-1], amp_hours[:-2]):
        whole, point, fraction = number.partition(".")
        if not (whole.isascii() and whole.isdigit()) or (point and not (fraction.isascii() and fraction.isdigit())):
            raise _Bad("%r is not like 48V/50AH" % value)
        numbers.append(float(number))
    _in_range(numbers[0], PACK_VOLTS, "rated voltage")
    _in_range(numbers[1], (1.0, MAX_AMP_HOURS), "rated capacity")
    return numbers[0], numbers[1]


def _rated_amps(value: str) -> float:
    """``-90000mA`` (unit glued) or ``90000 mA`` -> 90.0 A, always positive."""
    number = "".join(value.split())
    if not number.endswith("mA"):
        raise _Bad("%r is not a current in mA" % value)
    return abs(_amps(number[:-2]))


def _cell_count(token: str) -> int:
    count = _int(token)
    if not 1 <= count <= 999:
        raise _Bad("%d cells is impossible" % count)
    return count


def _baud(value: str) -> int:
    rate = _single_word(_int)(value)
    if rate not in BAUD_RATES:
        raise _Bad("%r is not a baud rate" % value)
    return rate  # type: ignore[return-value]


def _known_word(known: FrozenSet[str], changes: bool) -> Callable[[str], Optional[str]]:
    def read(value: str) -> Optional[str]:
        text = _text_value(value)
        if text is not None and _garbled(text, known, changes):
            raise _Bad("%r is garbled" % text)
        return text

    return read


_INFO_TEXT_KEYS = {
    "Manufacturer": ("manufacturer", _known_word(MANUFACTURERS, changes=True)),
    "Device name": ("device_name", _known_word(DEVICE_NAMES, changes=False)),
    "Board version": ("board_version", _text_value),
    "Main Soft version": ("main_soft_version", _text_value),
    "Soft version": ("soft_version", _text_value),
    "Barcode": ("barcode", _text_value),
}  # type: Dict[str, Tuple[str, Callable[[str], object]]]


def _check_ratings(info: Dict[str, object], rated_volts: Optional[float], what: str) -> None:
    """Rated voltage, cell count, capacity and currents must agree (a lost digit breaks them)."""
    cells = info.get("cell_count")
    if rated_volts is not None and isinstance(cells, int) and not 2.0 <= rated_volts / cells <= 4.3:
        raise ParseError("%s: %g V rated with %d cells is impossible" % (what, rated_volts, cells))
    charge, discharge = info.get("max_charge_current"), info.get("max_discharge_current")
    currents = [amps for amps in (charge, discharge) if isinstance(amps, float) and amps > 0.0]
    if len(currents) == 2 and max(currents) > 3.0 * min(currents):
        raise ParseError("%s: max charge %g A and max discharge %g A do not fit together" % (what, charge, discharge))
    capacity = info.get("nominal_capacity")
    if isinstance(capacity, float):
        for amps in currents:
            if not 0.1 <= amps / capacity <= 5.0:
                raise ParseError("%s: %g A is not a plausible rating for %g Ah" % (what, amps, capacity))


def parse_info(text: str) -> DeviceInfo:
    """``info`` / ``info N``: identity and ratings of one unit; other keys in ``extra``."""
    what = "info"
    _reject_error_reply(text, what)
    lines = _lines(text)
    anchor = _find_anchor(lines, _is_device_address, what, "'Device address'")
    address = _address_of(lines[anchor], what, anchor + 1, colon=True)
    _check_echo(lines, anchor, "info", address, what)
    entries = _entries(lines, anchor + 1, what)

    fields = {"address": address}  # type: Dict[str, object]
    extra = {}  # type: Dict[str, str]
    rated_volts = None  # type: Optional[float]
    for entry in entries:
        key = entry.key
        if key in _INFO_TEXT_KEYS:
            field, convert = _INFO_TEXT_KEYS[key]
            fields[field] = _convert_entry(entry, convert, what)
        elif key == "Specification":
            rated_volts, capacity = _convert_entry(entry, _specification, what)  # type: ignore[misc]
            fields["specification"] = " ".join(entry.value.split())
            fields["nominal_capacity"] = capacity
        elif key == "Cell Number":
            fields["cell_count"] = _convert_entry(entry, _single_word(_cell_count), what)
        elif key == "Max Dischg Curr":
            fields["max_discharge_current"] = _convert_entry(entry, _rated_amps, what)
        elif key == "Max Charge Curr":
            fields["max_charge_current"] = _convert_entry(entry, _rated_amps, what)
        elif key == "Console Port rate":
            fields["console_baud"] = _convert_entry(entry, _baud, what)
        else:
            if key == "EPONPort rate":  # not a record field, but a known one: check it
                _convert_entry(entry, _baud, what)
            extra[key] = " ".join(entry.value.split())
    _check_ratings(fields, rated_volts, what)
    return DeviceInfo(extra=extra, **fields)  # type: ignore[arg-type]


def _soh(token: str) -> float:
    return _in_range(float(_count(token)), (0.0, 100.0), "SOH")


_STAT_KEYS = {
    "CYCLE Times": ("cycle_count", _count),
    "SOH": ("soh", _soh),
    "SOH Percent": ("soh", _soh),  # Force
    "Charge Times": ("charge_times", _count),
}  # type: Dict[str, Tuple[str, Callable[[str], object]]]


def _check_right_aligned(entries: Sequence[_Entry], position: int, what: str) -> None:
    """Counters are right-aligned: a value that ends off both neighbours lost a character."""
    end = len(entries[position].line.rstrip())
    neighbours = [entries[i] for i in (position - 1, position + 1) if 0 <= i < len(entries)]
    if neighbours and all(len(other.line.rstrip()) != end for other in neighbours):
        entry = entries[position]
        raise ParseError(
            "%s line %d: %s is not aligned with its neighbours (dropped character?)" % (what, entry.lineno, entry.key)
        )


def parse_stats(text: str) -> Statistics:
    """``stat`` / ``stat N``: every ``label : value`` in ``counters``; cycles, SOH, charge times typed."""
    what = "stat"
    _reject_error_reply(text, what)
    lines = _lines(text)
    anchor = _find_anchor(lines, _is_device_address, what, "'Device address'")
    address = _address_of(lines[anchor], what, anchor + 1, colon=False)
    _check_echo(lines, anchor, "stat", address, what)
    entries = _entries(lines, anchor + 1, what)

    fields = {}  # type: Dict[str, object]
    counters = {}  # type: Dict[str, str]
    for position, entry in enumerate(entries):
        counters[entry.key] = " ".join(entry.value.split())
        known = _STAT_KEYS.get(entry.key)
        if known is not None:
            if known[0] in fields:
                raise ParseError("%s line %d: a second %s value" % (what, entry.lineno, known[0]))
            fields[known[0]] = _convert_entry(entry, _single_word(known[1]), what)
            _check_right_aligned(entries, position, what)
    return Statistics(address=address, counters=counters, **fields)  # type: ignore[arg-type]
