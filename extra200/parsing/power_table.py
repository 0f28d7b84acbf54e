"""``pwr``: the bank's table, one ``PowerRow`` per address slot (Absent slots too), or
the one system row of a Force HV stack.  Owns the table's column catalogue (every
firmware's header names and how each column is read) and the checks that only this
table allows: Absent rows against the header, a unit's row against itself, Force's
``Bat Volt`` against the system row, the number of rows."""

from typing import Dict, List, Optional, Sequence, Tuple

from ..model import PowerRow
from .common import MAX_UNITS, PWR_SLOTS, SERIES_CELLS, ParseError, _Bad
from .reply import _find_one, _reply_lines, _tokens
from .tables import (
    Span,
    _check_distinct_fields,
    _check_loose_spacing,
    _Column,
    _header_columns,
    _read_row,
    _Row,
    _single,
    _Spec,
    _table_rows,
)
from .values import (
    _amp_hours,
    _amps,
    _cell_id,
    _cell_volts,
    _celsius,
    _count,
    _index,
    _is_clock,
    _is_date,
    _optional,
    _pack_volts,
    _percent,
    _single_word,
    _state,
    _text_value,
    parse_number,
)

# The layout of the oldest firmware, which Absent rows keep under every header.
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


def _read_time(row: _Row) -> Tuple[object, ...]:
    date, clock = row.take(), row.take()
    if not (_is_date(date) and _is_clock(clock)):
        raise _Bad("%r %r is not a YYYY-MM-DD hh:mm:ss time" % (date, clock))
    return (date + " " + clock,)


def _read_pct_mah(row: _Row) -> Tuple[object, ...]:
    """Force ``CoulombAH``: ``89%  42586 mAH``, SoC and charge."""
    soc = _percent(row.take())
    charge = _amp_hours(row.take())
    row.take_unit("mAH")
    return (soc, charge)


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
    lines = _reply_lines(text, what)
    header = _find_one(lines, _is_pwr_header, what, "table header")
    where = "%s line %d" % (what, header + 1)
    columns = _header_columns(lines[header], _PWR_COLUMNS, where)
    _check_distinct_fields(columns, where)
    names = {column.name for column in columns}
    hv_system = "Power" not in names
    required = {"Volt", "Curr", "Base.St"} | ({"CoulombAH"} if hv_system else {"Power", "Coulomb"})
    if not required <= names:
        raise ParseError("%s: header lacks %s" % (where, ", ".join(sorted(required - names))))

    result: List[PowerRow] = []
    absent_lines: List[str] = []
    loose_spans: List[Tuple[int, List[Span]]] = []
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
