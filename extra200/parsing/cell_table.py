"""``bat N``: one unit's cells, one ``CellRow`` per cell, indices 0..n-1 without gaps.
Owns the table's column catalogue (every firmware's header names and how each column
is read; ``Coulomb`` changes shape beside a ``SOC`` column) and the checks that only
this table allows: each cell's Ah against its SoC and the other cells' capacity,
Force's WH against AH, the number of cells."""

from typing import List, Optional, Sequence, Tuple

from ..model import CellRow, CellTable
from .common import LV_CELL_COUNTS, MAX_AMP_HOURS, ParseError, _Bad
from .reply import _check_echo, _find_one, _reply_lines
from .tables import (
    _EXTRA,
    Span,
    _check_distinct_fields,
    _check_loose_spacing,
    _header_columns,
    _read_row,
    _Row,
    _single,
    _Spec,
    _table_rows,
)
from .values import _amp_hours, _amps, _cell_volts, _celsius, _count, _flag, _in_range, _index, _int, _percent, _state

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
        soc: float = cell.soc  # type: ignore[assignment]
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
    lines = _reply_lines(text, what)
    header = _find_one(lines, _is_bat_header, what, "table header")
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

    rows: List[CellRow] = []
    loose_spans: List[Tuple[int, List[Span]]] = []
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
