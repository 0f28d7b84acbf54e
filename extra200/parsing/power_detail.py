"""``pwr N``: one unit's detail (voltage, current, temperature, SoC, capacity, status
words, protections, event words; other keys kept in ``extra``).  Besides each value,
the block's layout is checked: every unit sits in one column, and values without a
unit fill fields as wide as their kind's, so a lost character shows."""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..model import PowerDetail
from .blocks import _convert_entry, _entries, _Entry
from .common import MAX_AMP_HOURS, PROTECTION_NAMES, ParseError, _Bad
from .reply import _check_echo, _find_one, _reply_lines, _tokens
from .values import _amps, _celsius, _count, _garbled, _is_plain_int, _pack_volts, _percent, _single_word, _state, parse_number


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


def _protect_list(value: str) -> Tuple[str, ...]:
    words = tuple(value.split())
    for word in words:
        if not (word.isascii() and word.isalnum() and word.upper() == word) or _garbled(word, PROTECTION_NAMES, changes=False):
            raise _Bad("%r is not a protection name" % word)
    if len(set(words)) != len(words):
        raise _Bad("a protection name twice (garbled %r?)" % value)
    return words


_DETAIL_UNITS = frozenset(("mv", "ma", "mc", "%", "mah", "mas", "as"))

_DETAIL_KEYS: Dict[str, Tuple[str, Callable[[str], object]]] = {
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
}
_DETAIL_REQUIRED = ("Voltage", "Current", "Coulomb")


def _check_unit_column(entries: Sequence[_Entry], what: str) -> None:
    """All units (mV, mA, mC, %, mAH ...) are printed in one column; a lost character moves one."""
    placed: List[Tuple[int, _Entry]] = []
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
    lines = _reply_lines(text, what)
    anchor = _find_one(
        lines, lambda words: len(words) == 2 and words[0] == "Power" and _is_plain_int(words[1]), what, "'Power N' line"
    )
    address = int(lines[anchor].split()[1])
    what = "pwr %d" % address
    _check_echo(lines, anchor, "pwr", address, what)
    entries = _entries(lines, anchor + 1, what, closing_rule=True)
    _check_unit_column(entries, what)
    _check_padded_fields(entries, what)

    fields: Dict[str, object] = {}
    extra: Dict[str, str] = {}
    for entry in entries:
        known = _DETAIL_KEYS.get(entry.key)
        if known is None:
            extra[entry.key] = entry.printed
        else:
            fields[known[0]] = _convert_entry(entry, known[1], what)
    missing = [key for key in _DETAIL_REQUIRED if _DETAIL_KEYS[key][0] not in fields]
    if missing:
        raise ParseError("%s: no %s line" % (what, ", ".join(missing)))
    return PowerDetail(address=address, extra=extra, **fields)  # type: ignore[arg-type]
