"""Charge control for Victron DVCC: CVL, CCL, DCL and alarms from what the console reports (pure).

These Pylontech / Pytes units have no working CAN link to the GX device, so
this program is the BMS voice: dbus-mqtt-battery publishes our
``Info.MaxChargeVoltage`` (CVL), ``Info.MaxChargeCurrent`` (CCL) and
``Info.MaxDischargeCurrent`` (DCL), and DVCC makes every charger and inverter
follow them.  DVCC ignores a battery's ``Io.AllowToCharge`` /
``AllowToDischarge``: stopping charge is CCL 0, stopping discharge is DCL 0
(the flags are published too, always equal to "limit > 0").

``ChargeController.update`` runs once per poll with the bank, its summary, a
monotonic clock and whether the data is fresh.  It keeps the little state the
rules need (charge phase, timers, the three ramps) and returns a frozen
``ChargeLimits``.  No I/O and no wall clock, so the rules can be tested over
any sequence of readings.

The rules (defaults and the reasoning in the README section "Charge control"):

* CVL: bulk target per cell x cells; after the pack has sat at CVL with the
  cells balanced for ``absorption_time`` (or in absorption for
  ``absorption_max_time``) it drops to the float target; back to bulk when SoC
  falls below ``rebulk_soc`` or the cell spread grows.  Every
  ``full_charge_days`` without a full report from the BMS, the target is
  ``full_charge_cell_voltage`` until every unit reports full.  A cell above
  ``max_cell_voltage`` lowers CVL at once by its overshoot; CVL then holds and
  rises slowly.  While charging must stop, CVL is at most the pack's voltage
  (CCL 0 does not stop every charger).  Never above
  ``battery.max_charge_voltage``, cells x ``max_cell_voltage``, nor 52.8 V for
  15 cells (56.0 V for 16 with ``max_charge_voltage: auto``).  Cells are counted
  per unit as the console reports them (``_CellCounts``): the fewest for CVL, and
  no charge current until every unit's count is known.
* CCL / DCL: the lowest of the configured maximum per battery x units, the
  units' own ``info`` rating x units, and derating curves by highest / lowest
  cell voltage, cell temperature, BMS/MOSFET temperature and (optionally)
  SoC; 0 at the cell cut-offs, outside the temperature windows and on a unit's
  abnormal status words and protection signals (a unit at its low cut-off in
  SysError may still recharge a little).  Whatever gives CCL 0 (a 0 A maximum
  too) is a stop: it also lowers CVL.  Each unit also gets its own limits and
  alarms (``ChargeLimits.units``) for its per-battery topic.
* Every reduction acts at once; every rise waits a hold time after the last
  reduction and then ramps.
* A reading that vanishes keeps its last value for the rules, and a unit's
  ``pwr N`` protection signals stand until a later ``pwr N`` shows them
  cleared; while a unit's cell voltages are unknown its pack voltage per cell
  still bounds them.  ``state()`` / ``restore()`` carry all this across a
  restart.
* Stale or incomplete data never raises a limit: while a unit is missing
  nothing may rise and CVL goes no higher than float; without fresh cell data
  CCL is 0 and DCL is held briefly (only if the bank was far from empty), then
  0 (a short CCL hold can be enabled the same way).
* Each change of a limit, with the rule and the cell or sensor behind it, is
  logged once (not every poll) and returned as readable text.
"""

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Set, Tuple

from .config import BatteryConfig, ChargeConfig
from .derive import BankSummary, Extreme, UnitSummary
from .model import Bank, Battery, CellRow, PowerDetail, PowerRow

logger = logging.getLogger(__name__)

# dbus-mqtt-battery's Alarms.* keys (victron-dbus-mqtt-battery.md §3.3), all sent as 0 / 1 / 2.
ALARM_NAMES: Tuple[str, ...] = (
    "LowVoltage",
    "HighVoltage",
    "LowSoc",
    "HighChargeCurrent",
    "HighDischargeCurrent",
    "HighCurrent",
    "CellImbalance",
    "HighChargeTemperature",
    "LowChargeTemperature",
    "LowCellVoltage",
    "LowTemperature",
    "HighTemperature",
    "FuseBlown",
    "BmsCable",
    "HighCellVoltage",
    "HighInternalTemperature",
    "InternalFailure",
    "StateOfHealth",
)
OK, WARNING, ALARM = 0, 1, 2

BULK = "Bulk"
ABSORPTION = "Absorption"
FLOAT = "Float"
SAFE_NO_DATA = "Safe (no data)"

PYLONTECH_15S_MAX_VOLTAGE = 52.8  # V: Victron's own clamp for 15-cell Pylontech packs (charge-control.md §7)
PYLONTECH_16S_MAX_VOLTAGE = 56.0  # V: Victron's CVL for 16-cell Pylontech packs (Pelio-L, charge-control.md §7)
# battery.max_charge_voltage: auto -> the pack ceiling for its cell count.
AUTO_PACK_CEILINGS = {15: PYLONTECH_15S_MAX_VOLTAGE, 16: PYLONTECH_16S_MAX_VOLTAGE}
LFP_CELL_MAX = 3.65  # V: LiFePO4 absolute cell limits, used for the alarm (2) level
LFP_CELL_MIN = 2.50
CELL_TABLE_MAX_AGE = 900.0  # s: an older "bat N" table no longer counts
SPREAD_NOISE = 0.005  # V: spread jitter tolerated before the absorption timer restarts
CHARGING_CURRENT = 1.0  # A: above this the bank counts as charging (temperature alarms)
STATE_VERSION = 1  # of ``ChargeController.state()``
RESUME_MAX_AGE = 900.0  # s: an older saved state does not resume phase, holds and limits
_CELL_COUNTS = (15, 16)

# Power Events bits -> (alarm, level).  The bit meanings are the community
# list (charge-control/console-protocol docs, unconfirmed): used for alarms
# only, never for the limits.
_POWER_EVENT_ALARMS: Tuple[Tuple[int, str, int], ...] = (
    (0x1, "HighVoltage", ALARM),
    (0x2, "HighVoltage", WARNING),
    (0x8, "LowVoltage", WARNING),
    (0x10, "LowVoltage", ALARM),
    (0x100, "HighTemperature", ALARM),
    (0x200, "HighTemperature", WARNING),
    (0x800, "LowTemperature", WARNING),
    (0x1000, "LowTemperature", ALARM),
    (0x10000, "HighCurrent", ALARM),
    (0x20000, "HighDischargeCurrent", ALARM),
    (0x40000, "HighChargeCurrent", ALARM),
    (0x80000, "HighDischargeCurrent", WARNING),
    (0x100000, "HighChargeCurrent", WARNING),
    (0x1000000, "InternalFailure", WARNING),
    (0x10000000, "InternalFailure", ALARM),
    (0x80000000, "StateOfHealth", ALARM),
)

# Power Events bits that stop a direction (with bms_states_block): over- / high-voltage and charge
# over-current stop charging; low- / under-voltage, discharge over-current and short circuit stop
# discharging.  The poller re-reads a unit's ``pwr N`` every poll while one is set, so it clears.
_CHARGE_STOP_EVENTS: Tuple[Tuple[int, str], ...] = (
    (0x1, "over-voltage"), (0x2, "high voltage"), (0x40000, "charge over-current 2"), (0x100000, "charge over-current"),
)
_DISCHARGE_STOP_EVENTS: Tuple[Tuple[int, str], ...] = (
    (0x8, "low voltage"), (0x10, "under-voltage"), (0x10000, "short circuit"),
    (0x20000, "discharge over-current 2"), (0x80000, "discharge over-current"),
)
_STOP_EVENTS = sum(bit for bit, _ in _CHARGE_STOP_EVENTS + _DISCHARGE_STOP_EVENTS)
_FULL_EVENT = 0x2000  # COULFULL
_SWITCHES = ("CMOS Status", "DMOS Status")  # Pytes pwr N: the BMS's own charge / discharge switch


def detail_signals_protection(detail: Optional[PowerDetail]) -> bool:
    """Whether a unit's ``pwr N`` holds a protection signal that stops a limit (read it again next poll)."""
    return detail is not None and (bool((detail.power_events or 0) & _STOP_EVENTS) or bool(detail.system_fault))


def _protection(detail: PowerDetail) -> Optional[PowerDetail]:
    """What of a ``pwr N`` stops or lowers a limit (stop events, System Fault, a switch OFF), None if nothing."""
    events = (detail.power_events or 0) & _STOP_EVENTS
    switches = {key: word for key, word in detail.extra.items() if key in _SWITCHES and word.strip().upper() == "OFF"}
    if not (events or detail.system_fault or switches):
        return None
    return PowerDetail(detail.address, power_events=events, system_fault=detail.system_fault, extra=switches)


class Reason(NamedTuple):
    """Why a limit has its value: ``key`` names the rule and its subject (stable while the
    value moves, so a creeping value is not logged every poll), ``text`` is readable."""

    key: str
    text: str


Candidate = Tuple[float, Reason]


@dataclass(frozen=True)
class UnitLimits:
    """One unit's own share of the decision, for its per-battery topic: what the rules give for
    this unit alone (never above its share of the bank maximum), and the alarms it causes."""

    address: int
    charge_current: float  # A: this unit's own CCL
    discharge_current: float  # A: this unit's own DCL
    blocks_charge: bool  # this unit's own condition stops charging (counts in NrOfModulesBlockingCharge)
    blocks_discharge: bool
    charge_reason: str
    discharge_reason: str
    alarms: Dict[str, int] = field(default_factory=dict)  # Alarms.<Name> -> 0/1/2 caused by this unit alone


@dataclass(frozen=True)
class ChargeLimits:
    """What the outputs publish for the bank (dbus-mqtt-battery ``Info``, ``Io``, ``Alarms``)."""

    charge_voltage: float  # CVL, V (2 dp, rounded down)
    charge_current: float  # CCL, A (1 dp, rounded down), bank total
    discharge_current: float  # DCL, A, bank total
    allow_charge: bool  # == charge_current > 0
    allow_discharge: bool  # == discharge_current > 0
    mode: str  # Bulk / Absorption / Float / Safe (...)
    charge_reason: str  # the rule that sets CCL now, naming the cell or sensor
    discharge_reason: str
    voltage_reason: str
    alarms: Dict[str, int] = field(default_factory=dict)  # Alarms.<Name> -> 0 ok / 1 warning / 2 alarm
    battery_low_voltage: Optional[float] = None  # Info.BatteryLowVoltage, V
    units: Dict[int, UnitLimits] = field(default_factory=dict)  # each present unit's own limits, by address

    @property
    def diagnostic(self) -> str:
        """One readable line: mode and each limit with its reason."""
        return "%s | CVL %.2f V: %s | CCL %.1f A: %s | DCL %.1f A: %s" % (
            self.mode,
            self.charge_voltage,
            self.voltage_reason,
            self.charge_current,
            self.charge_reason,
            self.discharge_current,
            self.discharge_reason,
        )


def _first_text(reasons: Sequence[Reason]) -> Optional[str]:
    return reasons[0].text if reasons else None


def _soc_text(soc: Optional[float]) -> str:
    return "unknown" if soc is None else "%.1f %%" % soc


def _floor(value: float, digits: int) -> float:
    """Round down (a published limit never ends up above the value the rules allow)."""
    scale = 10**digits
    return round(math.floor(value * scale + 1e-6) / scale, digits)


def _ceil(value: float, digits: int) -> float:
    scale = 10**digits
    return round(math.ceil(value * scale - 1e-6) / scale, digits)


def _lowest(candidates: Sequence[Candidate]) -> Candidate:
    """The smallest candidate; on a tie the first listed (the most basic rule) names the reason."""
    best = candidates[0]
    for candidate in candidates[1:]:
        if candidate[0] < best[0] - 1e-9:
            best = candidate
    return best


class Curve:
    """A derating curve: fraction 0..1 of a value, straight lines between points, flat beyond the ends."""

    def __init__(self, text: str) -> None:
        self.points = tuple((x, pct / 100.0) for x, pct in ChargeConfig.parse_curve(text))

    def __call__(self, x: float) -> float:
        points = self.points
        if x <= points[0][0]:
            return points[0][1]
        for (x0, f0), (x1, f1) in zip(points, points[1:]):
            if x <= x1:
                return f0 + (f1 - f0) * (x - x0) / (x1 - x0)
        return points[-1][1]


class _Limit:
    """One published limit: reductions at once, rises after a hold and at a rate, changes logged once."""

    def __init__(self, name: str, unit: str, digits: int, hold: float) -> None:
        self.name = name
        self.unit = unit
        self.digits = digits
        self.hold = hold
        self.value: Optional[float] = None  # unrounded, so a slow ramp is not lost to rounding
        self.published: Optional[float] = None
        self._down_at: Optional[float] = None
        self._last_now: Optional[float] = None
        self._logged: Optional[Tuple[float, str]] = None  # (value, reason key) of the last log line

    def fmt(self, value: Optional[float]) -> str:
        return "-" if value is None else "%.*f" % (self.digits, value)

    @property
    def down_at(self) -> Optional[float]:
        """When the limit was last reduced."""
        return self._down_at

    def forget(self) -> None:
        """Start over: the next step sets the limit to its target (no hold, no ramp)."""
        self.value = None
        self._down_at = None

    def hold_from(self, now: float) -> None:
        """Count the hold from ``now`` (a stop still in force): the limit rises only a hold after it clears."""
        if self.value is not None:
            self._down_at = now

    def resume(self, value: object, reduced_ago: object, now: float, age: float) -> None:
        """Continue from a saved value: its hold counts on from the saved reduction, and the first
        poll after the restart earns no ramp (so it is never above the value saved)."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            return
        self.value = float(value)
        self.published = _floor(self.value, self.digits)
        self._last_now = now
        if isinstance(reduced_ago, (int, float)) and reduced_ago >= 0:
            self._down_at = now - age - reduced_ago

    def step(
        self, target: float, reason: Reason, now: float, rate: float, blocked: Optional[str], log_step: float
    ) -> Tuple[float, str]:
        """Move towards ``target``; ``blocked`` (a readable why) forbids any rise this poll."""
        target = max(target, 0.0)
        why = reason
        allowed = "%s %s %s (%s)" % (self.name, self.fmt(_floor(target, self.digits)), self.unit, reason.text)
        if self.value is None:
            new = target
        elif target < self.value - 1e-9:
            new = target
            self._down_at = now
        elif target > self.value + 1e-9:
            if blocked is not None:
                new = self.value
                why = Reason("blocked", "held, %s; rules allow %s" % (blocked, allowed))
            elif self._down_at is not None and now - self._down_at < self.hold:
                new = self.value
                why = Reason("hold", "held %.0f s after a reduction; rules allow %s" % (self.hold, allowed))
            else:
                elapsed = max(0.0, now - self._last_now) if self._last_now is not None else 0.0
                new = min(target, self.value + rate * elapsed)
                if new < target - 1e-9:
                    why = Reason("ramp", "rising at %g %s/s to %s" % (rate, self.unit, allowed))
        else:
            new = target
        self.value = new
        self._last_now = now
        published = _floor(new, self.digits)
        if published != self.published:
            self._log(published, why, log_step)
        self.published = published
        return published, why.text

    def _log(self, published: float, why: Reason, log_step: float) -> None:
        """Log a change when the rule (or its cell / sensor) changed, at 0, or after a ``log_step`` drift."""
        last_value, last_key = self._logged if self._logged is not None else (None, None)
        if (
            last_value is None
            or why.key != last_key
            or published == 0.0
            or last_value == 0.0
            or (why.key != "ramp" and abs(published - last_value) >= log_step)
        ):
            logger.info(
                "%s %s -> %s %s: %s", self.name, self.fmt(self.published), self.fmt(published), self.unit, why.text
            )
            self._logged = (published, why.key)


def _state_kind(word: Optional[str]) -> Optional[Tuple[str, int]]:
    """(direction, level) of an abnormal status word, None for Normal or unknown ("-").

    ``High`` / ``Low`` are the first stage (warning); ``Over`` / ``Under`` the
    protection stage (alarm); any other word counts as an abnormal warning.
    """
    if word is None:
        return None
    text = word.strip().lower()
    if text in ("", "-", "normal"):
        return None
    for prefix, kind in (
        ("high", ("high", WARNING)),
        ("over", ("high", ALARM)),
        ("low", ("low", WARNING)),
        ("under", ("low", ALARM)),
    ):
        if text.startswith(prefix):
            return kind
    return ("other", WARNING)


# Status columns by what they watch: (console label, PowerRow attribute).
_ROW_VOLTAGE_STATES = (("Volt.St", "voltage_state"), ("B.V.St", "battery_voltage_state"))
_ROW_TEMPERATURE_STATES = (
    ("Temp.St", "temperature_state"),
    ("B.T.St", "battery_temperature_state"),
    ("M.T.St", "mos_temperature_state"),
)


@dataclass(frozen=True)
class _State:
    """One abnormal status word of a unit or a cell."""

    address: int
    column: str  # console label: Volt.St, B.V.St, Temp.St, a cell's Volt. State ...
    word: str
    direction: str  # high / low / other
    level: int
    cell: Optional[int] = None  # 0-based cell index for cell states

    @property
    def where(self) -> str:
        return (
            "B%dC%d %s" % (self.address, self.cell + 1, self.column)
            if self.cell is not None
            else "B%d %s" % (self.address, self.column)
        )

    @property
    def text(self) -> str:
        return "%s %s" % (self.where, self.word)


@dataclass(frozen=True)
class _Unit:
    """One present unit as the rules see it (cell extremes from the fresh pwr row and a recent cell table)."""

    battery: Battery
    pack_voltage: Optional[float]
    current: Optional[float]
    soc: Optional[float]
    cell_high: Optional[Extreme]
    cell_low: Optional[Extreme]
    temp_high: Optional[Extreme]
    temp_low: Optional[Extreme]
    electronics: Optional[Tuple[float, str]]  # hottest of BMS and MOSFET temperature, with its label
    cell_voltages: Tuple[float, ...]  # this poll's cell table, else empty
    # The highest cell as of this poll (the pwr row, and the cell table only when read in this poll):
    # the CVL controller subtracts its overshoot from today's pack voltage, so an older table must
    # not count, or CVL would be walked down poll after poll for a cell that has come back.
    cell_high_now: Optional[Extreme]
    cell_count: Optional[int]
    states: Tuple[_State, ...]
    row_gap: Optional[str]  # what the fresh pwr row lacks for charging ("no cell voltages" ...), else None
    row_gap_discharge: Optional[str]  # the same for discharging
    row: PowerRow  # the pwr row with vanished readings held from the last one
    held: Tuple[str, ...] = ()  # the readings held

    @property
    def address(self) -> int:
        return self.battery.address

    @property
    def pack_low(self) -> bool:
        """At its low cut-off by its own word: a voltage state Low / Under."""
        return any(s.column in ("Volt.St", "B.V.St", "Volt. State") and s.direction == "low" for s in self.states)

    def full(self) -> bool:
        """The BMS's own full state: SoC (Coulomb) 100 %, ``Coul. Status`` Full or the COULFULL event."""
        detail = self.battery.detail
        if detail is not None and (
            (detail.coulomb_state or "").strip().lower() == "full" or (detail.power_events or 0) & _FULL_EVENT
        ):
            return True
        return self.soc is not None and self.soc >= 100.0

    def fet_off(self, key: str) -> bool:
        """Pytes ``pwr N`` prints ``CMOS Status`` / ``DMOS Status``: the BMS's own charge / discharge switch."""
        detail = self.battery.detail
        return detail is not None and detail.extra.get(key, "").strip().upper() == "OFF"

    def unseen_cell_average(self, charge: bool) -> Optional[float]:
        """Pack voltage per cell while the row lacks the highest (``charge``) / lowest cell: that cell is at
        least (at most) this average.  An unknown count counts as the cells that keep this true (16 / 15)."""
        raw = self.battery.row
        if raw is None or self.pack_voltage is None:
            return None
        if (raw.cell_voltage_high if charge else raw.cell_voltage_low) is not None:
            return None
        return self.pack_voltage / (self.cell_count or (max if charge else min)(_CELL_COUNTS))

    def overshoot(self, limit: float) -> float:
        """How far the cells are above ``limit`` now: the highest cell's excess, or the sum over this poll's table."""
        single = self.cell_high_now.value - limit if self.cell_high_now is not None else 0.0
        summed = sum(v - limit for v in self.cell_voltages if v > limit)
        return max(single, summed, 0.0)


def _pick(a: Optional[Extreme], b: Optional[Extreme], highest: bool) -> Optional[Extreme]:
    if a is None or b is None:
        return a if b is None else b
    if highest:
        return b if b.value > a.value else a
    return b if b.value < a.value else a


def _row_extreme(
    located: Optional[Extreme], value: Optional[float], address: int, index: Optional[int]
) -> Optional[Extreme]:
    """The pwr row's extreme, keeping the cell derive.py located in the table when the row has no id."""
    if value is None:
        return None
    if located is not None and abs(located.value - value) < 1e-9:
        return located
    return Extreme(value, address, index)


def _table_extreme(cells: Sequence[CellRow], attr: str, highest: bool, address: int) -> Optional[Extreme]:
    known = [(getattr(c, attr), c.index) for c in cells if getattr(c, attr) is not None]
    if not known:
        return None
    value, index = (max if highest else min)(known, key=lambda pair: pair[0])
    return Extreme(value, address, index)


# pwr-row readings a unit keeps from its last row while the console prints "-" for them: a reading
# that vanishes must not lift the derating (or the stop) it caused.  Cell voltages and temperatures
# still count as missing for the blind rules (CCL 0, DCL held briefly); the held values only cap.
_HELD_READINGS = (
    "current", "temperature", "cell_temp_low", "cell_temp_high", "cell_voltage_low", "cell_voltage_high",
    "base_state", "voltage_state", "current_state", "temperature_state", "soc", "battery_voltage_state",
    "battery_temperature_state", "mos_temperature", "mos_temperature_state", "system_alarm_state",
)
_HELD_IDS = {
    "cell_temp_low": "cell_temp_low_id", "cell_temp_high": "cell_temp_high_id",
    "cell_voltage_low": "cell_voltage_low_id", "cell_voltage_high": "cell_voltage_high_id",
}


def _with_held_readings(row: PowerRow, last: Optional[PowerRow]) -> Tuple[PowerRow, Tuple[str, ...]]:
    """``row`` with each vanished reading taken from ``last`` (with its cell id), and the names held."""
    if last is None:
        return row, ()
    fill: Dict[str, object] = {}
    for name in _HELD_READINGS:
        if getattr(row, name) is None and getattr(last, name) is not None:
            fill[name] = getattr(last, name)
            if name in _HELD_IDS:
                fill[_HELD_IDS[name]] = getattr(last, _HELD_IDS[name])
    if not fill:
        return row, ()
    return dataclasses.replace(row, **fill), tuple(n for n in _HELD_READINGS if n in fill)


def _read_unit(battery: Battery, summary: Optional[UnitSummary], now: float, last: Optional[PowerRow]) -> _Unit:
    raw = battery.row
    assert raw is not None  # only present units are read
    row, held = _with_held_readings(raw, last)
    table = battery.cells
    recent = (
        table is not None and battery.cells_time is not None and 0.0 <= now - battery.cells_time <= CELL_TABLE_MAX_AGE
    )
    cells = table.cells if (table is not None and recent) else ()
    # A table read in this poll carries the same moment as the row.
    this_poll = recent and battery.row_time is not None and battery.cells_time is not None \
        and battery.cells_time >= battery.row_time
    cells_now = cells if this_poll else ()

    def extreme(
        attr: str, highest: bool, field_name: str, index: Optional[int], located: Optional[Extreme]
    ) -> Optional[Extreme]:
        # The fresh row is newer than an older table: the table counts with it only when read in this
        # poll (else a cell back to normal would keep its old value, and its reason, until the next table).
        value = getattr(row, field_name)
        from_row = _row_extreme(located, value, battery.address, index)
        table_cells = cells_now if getattr(raw, field_name) is not None else cells
        return _pick(from_row, _table_extreme(table_cells, attr, highest, battery.address), highest)

    s = summary
    electronics = [
        (t, label) for t, label in ((row.temperature, "BMS"), (row.mos_temperature, "MOSFET")) if t is not None
    ]
    states: List[_State] = []
    for column, attr in (
        _ROW_VOLTAGE_STATES
        + _ROW_TEMPERATURE_STATES
        + (("Curr.St", "current_state"), ("SysAlarm.St", "system_alarm_state"))
    ):
        word = getattr(row, attr)
        kind = _state_kind(word)
        if kind is not None:
            states.append(_State(battery.address, column, word.strip(), kind[0], kind[1]))
    if row.base_state is not None and row.base_state.strip().lower() == "syserror":
        states.append(_State(battery.address, "Base.St", row.base_state.strip(), "other", ALARM))
    # An older table's cell state words give way to the row's own summary of them (B.V.St, B.T.St).
    summarised = {"Volt. State": raw.battery_voltage_state, "Temp. State": raw.battery_temperature_state}
    for cell in cells:
        columns = [
            ("Volt. State", cell.voltage_state),
            ("Temp. State", cell.temperature_state),
            ("Curr. State", cell.current_state),
        ]
        columns.extend(
            (label, word) for label, word in sorted(cell.extra.items()) if label in ("CTemp. State", "DTemp. State")
        )
        for column, word in columns:
            if not this_poll and summarised.get(column) is not None:
                continue
            kind = _state_kind(word)
            if kind is not None and word is not None:
                states.append(_State(battery.address, column, word.strip(), kind[0], kind[1], cell.index))
    count = battery.cell_count
    # Only the pwr row is read every poll: a cell table may add cells but never stands in for it,
    # and a reading held from an earlier row keeps its derating but not the right to charge.
    no_temps = "no cell temperatures" if raw.cell_temp_low is None or raw.cell_temp_high is None else None
    return _Unit(
        battery=battery,
        pack_voltage=raw.voltage,
        current=row.current,
        soc=row.soc,
        cell_high=extreme(
            "voltage", True, "cell_voltage_high", row.cell_voltage_high_id, s.cell_voltage_max if s else None
        ),
        cell_low=extreme(
            "voltage", False, "cell_voltage_low", row.cell_voltage_low_id, s.cell_voltage_min if s else None
        ),
        temp_high=extreme(
            "temperature", True, "cell_temp_high", row.cell_temp_high_id, s.cell_temp_max if s else None
        ),
        temp_low=extreme("temperature", False, "cell_temp_low", row.cell_temp_low_id, s.cell_temp_min if s else None),
        electronics=max(electronics) if electronics else None,
        cell_voltages=tuple(c.voltage for c in cells_now if c.voltage is not None),
        cell_high_now=_pick(
            _row_extreme(s.cell_voltage_max if s else None, raw.cell_voltage_high, battery.address,
                         raw.cell_voltage_high_id),
            _table_extreme(cells_now, "voltage", True, battery.address), True),
        cell_count=count if count in _CELL_COUNTS else None,
        states=tuple(states),
        row_gap=(
            "no cell voltages"
            if raw.cell_voltage_high is None
            else "no pack voltage"
            if raw.voltage is None
            else no_temps
        ),
        row_gap_discharge="no cell voltages" if raw.cell_voltage_low is None else no_temps,
        row=row,
        held=held,
    )


def _plural(addresses: Sequence[int], what: str) -> str:
    return "%s %s %s" % ("unit" if len(addresses) == 1 else "units", ", ".join(str(a) for a in addresses), what)


class _Alarms:
    """The alarm levels being built for one poll, each with the reason for its level."""

    def __init__(self) -> None:
        self.levels: Dict[str, int] = {name: OK for name in ALARM_NAMES}
        self.reasons: Dict[str, str] = {}

    def set(self, name: str, level: int, reason: str) -> None:
        if level > self.levels[name]:
            self.levels[name] = level
            self.reasons[name] = reason

    def merge_high_current(self) -> None:
        """``HighCurrent``: the worse of the charge and discharge current alarms."""
        self.set(
            "HighCurrent",
            max(self.levels["HighChargeCurrent"], self.levels["HighDischargeCurrent"]),
            self.reasons.get("HighChargeCurrent") or self.reasons.get("HighDischargeCurrent", ""),
        )

    def threshold(self, name: str, value: float, warn: float, alarm: float, high: bool, text: str) -> None:
        """Warning / alarm when ``value`` reaches ``warn`` / ``alarm`` (upwards if ``high``, else downwards)."""
        reached = (lambda limit: value >= limit) if high else (lambda limit: value <= limit)
        if reached(alarm):
            self.set(name, ALARM, text)
        elif reached(warn):
            self.set(name, WARNING, text)


@dataclass(frozen=True)
class _Side:
    """The settings of one direction (charge or discharge)."""

    name: str  # charge / discharge
    per_battery: float
    cutoff: float
    cell_curve: Curve
    temp_min: float
    temp_max: float
    temp_curve: Curve
    soc_curve: Curve
    fet_key: str
    grace: float  # s the limit is held without data (stale_*_grace)
    charge: bool  # True: highest cell, fullest unit; False: lowest cell, emptiest unit


@dataclass
class _Blind:
    """One direction's stretch without data: since when, whether the grace applies, the last worst cell."""

    since: Optional[float] = None
    grace: bool = False
    last_cell: Optional[float] = None  # highest (charge) / lowest (discharge) cell of the last good poll


@dataclass(frozen=True)
class _Series:
    """How many cells in series each voltage rule counts with, this poll."""

    cvl: int  # the fewest: CVL and its ceilings (a parallel 15/16-cell bank charges to the 15-cell limit)
    low: int  # the most: BatteryLowVoltage (the higher cut-off)
    unknown: Optional[str]  # why charging waits (units whose count the console has not told yet), else None


class _CellCounts:
    """Cells per unit as the console reports them (``bat N``, ``info N``), against ``battery.num_cells``.

    Voltages follow the console: a configured count only ever lowers CVL (the
    fewer cells win) and raises BatteryLowVoltage, and a disagreement is
    logged once.  Every count a unit reported during the run is kept, so a
    count that flips between reads can only make the limits more careful.
    Until every present unit's count is known, both 15 and 16 count (the most
    careful of each) and the caller publishes no charge current.
    """

    def __init__(self, configured: Optional[int]) -> None:
        self._configured = configured
        self._seen: Dict[int, Set[int]] = {}  # address -> counts reported
        self._disagreement_noted = False

    def update(self, units: Sequence["_Unit"]) -> _Series:
        for u in units:
            if u.cell_count is not None:
                self._seen.setdefault(u.address, set()).add(u.cell_count)
        unknown = [u.address for u in units if not self._seen.get(u.address)]
        reported = set().union(*(self._seen.get(u.address, set()) for u in units)) if units else set()
        counts = set(reported)
        if self._configured is not None:
            counts.add(self._configured)
            self._note_disagreement(reported)
        if unknown or not counts:
            counts |= set(_CELL_COUNTS)
        reason = _plural(unknown, "cell count not known yet") if unknown else None
        return _Series(min(counts), max(counts), reason)

    def state(self) -> Dict[str, List[int]]:
        return {str(address): sorted(counts) for address, counts in sorted(self._seen.items())}

    def restore(self, saved: object) -> None:
        """Counts saved by ``state``; anything that is not a unit's list of 15 / 16 is ignored."""
        if not isinstance(saved, Mapping):
            return
        for address, counts in saved.items():
            if str(address).isdigit() and isinstance(counts, list):
                known = {c for c in counts if c in _CELL_COUNTS}
                if known:
                    self._seen.setdefault(int(address), set()).update(known)

    def _note_disagreement(self, reported: Set[int]) -> None:
        if self._disagreement_noted or not reported or reported == {self._configured}:
            return
        self._disagreement_noted = True
        logger.warning(
            "battery.num_cells is %d but the console reports %s cells: charge voltages count %d cells "
            "(the lower), BatteryLowVoltage %d; set battery.num_cells: auto to follow the console",
            self._configured, "/".join(str(r) for r in sorted(reported)),
            min(reported | {self._configured}), max(reported | {self._configured}))


class ChargeController:
    """CVL / CCL / DCL and alarms, poll after poll (see the module docstring for the rules)."""

    def __init__(self, charge: ChargeConfig, battery: BatteryConfig) -> None:
        self._cfg = charge
        self._bat = battery
        self._electronics_curve = Curve(charge.electronics_temperature_curve)
        self._sides = (
            _Side(
                "charge",
                battery.max_charge_current,
                charge.charge_cutoff_cell_voltage,
                Curve(charge.charge_cell_voltage_curve),
                charge.charge_min_temperature,
                charge.charge_max_temperature,
                Curve(charge.charge_temperature_curve),
                Curve(charge.charge_soc_curve),
                "CMOS Status",
                charge.stale_charge_grace,
                True,
            ),
            _Side(
                "discharge",
                battery.max_discharge_current,
                charge.discharge_cutoff_cell_voltage,
                Curve(charge.discharge_cell_voltage_curve),
                charge.discharge_min_temperature,
                charge.discharge_max_temperature,
                Curve(charge.discharge_temperature_curve),
                Curve(charge.discharge_soc_curve),
                "DMOS Status",
                charge.stale_discharge_grace,
                False,
            ),
        )
        self._settled = False  # a poll with complete data has been seen (or the state was resumed)
        self._cvl = _Limit("CVL", "V", 2, charge.cvl_recovery_hold)
        self._ccl = _Limit("CCL", "A", 1, charge.current_recovery_hold)
        self._dcl = _Limit("DCL", "A", 1, charge.current_recovery_hold)
        self._phase = BULK
        # The absorption clocks count only time between two polls with complete data, so a stretch
        # without data never counts as time at target.
        self._balanced = False  # the cells were balanced at the last complete poll in absorption
        self._balanced_for = 0.0  # s balanced at target
        self._absorbing_for = 0.0  # s in absorption
        self._last_complete: Optional[float] = None  # ``now`` of the last poll with complete data
        self._cell_capped = False  # CVL is below the target because of the high-cell rule, until back at target
        self._since_full: Optional[float] = None  # s since the BMS last reported full (counted from the first poll)
        self._full_due = False
        self._last_now: Optional[float] = None
        self._soc_armed = True  # float -> bulk by SoC only once SoC was at or above the threshold
        self._seen: Set[int] = set()
        self._cell_counts = _CellCounts(battery.cells)
        self._last_rows: Dict[int, PowerRow] = {}  # each unit's last row, vanished readings held
        self._protections: Dict[int, PowerDetail] = {}  # each unit's protection signals in its last pwr N
        self._blind = {side.name: _Blind() for side in self._sides}
        self._alarms: Dict[str, int] = {name: OK for name in ALARM_NAMES}
        self._logged_alarms: Dict[str, int] = {name: OK for name in ALARM_NAMES}
        self._mode = ""
        self._noted: Set[str] = set()
        self._resume: Optional[Tuple[Dict[str, Any], float]] = None  # (saved state, its age) until the next poll
        self._check_settings()

    # -- helpers ---------------------------------------------------------

    def _note(self, key: str, message: str, *args: object) -> None:
        """Log a warning once per run."""
        if key not in self._noted:
            self._noted.add(key)
            logger.warning(message, *args)

    def _check_settings(self) -> None:
        c, n, cap = self._cfg, self._bat.cells or 15, self._bat.charge_voltage_cap
        if not c.enabled:
            logger.warning("charge.enabled is false: publishing the configured maximums only, no derating, "
                           "no cut-offs (CVL %.2f V, %.1f / %.1f A per battery)", self._fixed_voltage(n),
                           self._bat.max_charge_current, self._bat.max_discharge_current)
        if c.float_cell_voltage > c.bulk_cell_voltage:
            logger.warning(
                "charge.float_cell_voltage %.3f V is above charge.bulk_cell_voltage %.3f V: float uses the bulk value",
                c.float_cell_voltage,
                c.bulk_cell_voltage,
            )
        if c.bulk_cell_voltage > c.max_cell_voltage:
            logger.warning(
                "charge.bulk_cell_voltage %.3f V is above charge.max_cell_voltage %.3f V: bulk uses the maximum",
                c.bulk_cell_voltage,
                c.max_cell_voltage,
            )
        per_cell = min(c.bulk_cell_voltage, c.max_cell_voltage)
        if cap is not None and cap < n * per_cell:
            logger.warning(
                "battery.max_charge_voltage %.2f V is below the bulk target %.2f V (%d cells x %.3f V): CVL stays at %.2f V",
                cap,
                n * per_cell,
                n,
                per_cell,
                cap,
            )
        if self._sides[0].cell_curve(c.bulk_cell_voltage) <= 0.0:
            logger.warning(
                "charge.charge_cell_voltage_curve allows no current at the bulk target %.3f V: float will never be reached",
                c.bulk_cell_voltage,
            )

    def _read(self, battery: Battery, summary: Optional[UnitSummary], now: float) -> _Unit:
        """One unit as the rules see it, with its vanished readings and unread pwr N signals held."""
        address = battery.address
        if battery.detail is not None:
            protection = _protection(battery.detail)
            if protection is None:
                self._protections.pop(address, None)
            else:
                self._protections[address] = protection
        elif address in self._protections:
            # pwr N is read on some polls only (none yet after a restart): its signals stand until it shows them cleared.
            battery = dataclasses.replace(battery, detail=self._protections[address])
        unit = _read_unit(battery, summary, now, self._last_rows.get(address))
        self._last_rows[address] = unit.row
        return unit

    # -- the poll ----------------------------------------------------------

    def update(self, bank: Bank, summary: BankSummary, now: float, fresh: bool) -> ChargeLimits:
        """The limits for this poll.  ``fresh`` False: the poll failed or the data is stale."""
        if self._resume is not None:
            self._apply_resume(now)
        self._count_time(now)
        by_address = {u.address: u for u in summary.units}
        units = [self._read(b, by_address.get(b.address), now) for b in bank.present()] if fresh else []
        present = {u.address for u in units}
        if fresh:
            self._seen |= present
        missing = sorted((set(bank.missing) | set(bank.expected) | self._seen) - present) if fresh else []

        series = self._cell_counts.update(units)
        cells_cvl, cells_low = series.cvl, series.low
        spread = self._spread(units)
        if not self._cfg.enabled:
            return self._fixed(units, summary, spread, cells_cvl, cells_low, missing)
        charge_blind = self._blindness(units, fresh, charge=True) or series.unknown
        if series.unknown is not None:
            # Not a data gap that stale_charge_grace may bridge: no charge current at all until the count is known.
            self._blind["charge"].grace = False
            self._blind["charge"].last_cell = None
        discharge_blind = self._blindness(units, fresh, charge=False)
        incomplete = charge_blind or discharge_blind or (_plural(missing, "missing") if missing else None)

        if incomplete is None:
            self._advance_phase(units, now, spread, cells_cvl)
            self._last_complete = now
        else:
            self._last_complete = None
        mode = self._phase if incomplete is None else ("Safe (%s)" % incomplete if fresh and units else SAFE_NO_DATA)
        if mode != self._mode and mode.startswith("Safe"):
            logger.warning(
                "Charge control %s: no limit may rise, CVL at most float%s",
                mode,
                ", no charging" if charge_blind else "",
            )
        elif mode != self._mode and self._mode.startswith("Safe"):
            logger.info("Charge control data complete again: %s", mode)
        self._mode = mode

        if incomplete is None and not self._settled:
            # The first complete data since start: what was published so far was the rules' cautious answer
            # while the console's data was still arriving (cells, counts), not a reduction to hold or ramp from.
            self._settled = True
            for limit in (self._cvl, self._ccl, self._dcl):
                limit.forget()
        charge, charge_reason, stopped = self._current(self._sides[0], units, now, fresh, charge_blind, incomplete)
        discharge, discharge_reason, _ = self._current(self._sides[1], units, now, fresh, discharge_blind, incomplete)
        voltage, voltage_reason = self._voltage(units, now, cells_cvl, incomplete, stopped)
        self._update_alarms(units, summary, spread, cells_cvl, missing, fresh)
        return ChargeLimits(
            charge_voltage=voltage,
            charge_current=charge,
            discharge_current=discharge,
            allow_charge=charge > 0.0,
            allow_discharge=discharge > 0.0,
            mode=mode,
            charge_reason=charge_reason,
            discharge_reason=discharge_reason,
            voltage_reason=voltage_reason,
            alarms=dict(self._alarms),
            battery_low_voltage=_ceil(cells_low * self._cfg.discharge_cutoff_cell_voltage, 2),
            units={u.address: self._unit_limits(u, units, cells_cvl) for u in units},
        )

    def _update_alarms(self, units: Sequence[_Unit], summary: BankSummary, spread: Optional[float], cells: int,
                       missing: Sequence[int], fresh: bool) -> None:
        if fresh:
            self._alarms = self._alarm_levels(units, summary, spread, cells, missing)
        else:
            self._alarms = dict(self._alarms, BmsCable=ALARM)
            self._log_alarm("BmsCable", ALARM, "no fresh data")

    def _count_time(self, now: float) -> None:
        """Advance the time since the last full charge; note when a full charge falls due."""
        if self._since_full is None:
            self._since_full = 0.0
        elif self._last_now is not None and now > self._last_now:
            self._since_full += now - self._last_now
        self._last_now = now
        days = self._cfg.full_charge_days
        if days > 0 and not self._full_due and self._since_full >= days * 86400.0:
            self._full_due = True
            logger.info("Full charge due: the BMS has not reported full for %.1f days (charge.full_charge_days %g); "
                        "CVL target %.3f V per cell until it does", self._since_full / 86400.0, days,
                        self._target_cell_voltage())

    @staticmethod
    def _blindness(units: Sequence[_Unit], fresh: bool, charge: bool) -> Optional[str]:
        """Why the rules of one direction cannot be evaluated, or None."""
        if not fresh:
            return "no fresh data"
        if not units:
            return "no unit reporting"
        for u in units:
            gap = u.row_gap if charge else u.row_gap_discharge
            if gap is not None:
                return "B%d reports %s" % (u.address, gap)
        return None

    @staticmethod
    def _spread(units: Sequence[_Unit]) -> Optional[float]:
        highs = [u.cell_high.value for u in units if u.cell_high is not None]
        lows = [u.cell_low.value for u in units if u.cell_low is not None]
        if not highs or not lows or len(highs) != len(units) or len(lows) != len(units):
            return None
        return round(max(highs) - min(lows), 3)

    # -- charge control off ------------------------------------------------

    def _fixed_voltage(self, cells: int) -> float:
        """CVL with charge control off: battery.max_charge_voltage (auto: the cell count's ceiling),
        under the 52.8 V ceiling of 15 cells."""
        voltage = self._pack_ceiling(cells)[0]
        if cells == 15:
            voltage = min(voltage, PYLONTECH_15S_MAX_VOLTAGE)
        return _floor(voltage, 2)

    def _fixed(self, units: Sequence[_Unit], summary: BankSummary, spread: Optional[float], cells: int,
               cells_low: int, missing: Sequence[int]) -> ChargeLimits:
        """``charge.enabled: false``: the configured maximums x units online, nothing derived; alarms as usual."""
        online = len(units)
        self._update_alarms(units, summary, spread, cells, missing, bool(units))
        charge, discharge = self._bat.max_charge_current * online, self._bat.max_discharge_current * online
        text = "charge control off: max %.1f A x %d units"
        return ChargeLimits(
            charge_voltage=self._fixed_voltage(cells),
            charge_current=_floor(charge, 1),
            discharge_current=_floor(discharge, 1),
            allow_charge=_floor(charge, 1) > 0.0,
            allow_discharge=_floor(discharge, 1) > 0.0,
            mode="Off",
            charge_reason=text % (self._bat.max_charge_current, online),
            discharge_reason=text % (self._bat.max_discharge_current, online),
            voltage_reason="charge control off: battery.max_charge_voltage",
            alarms=dict(self._alarms),
            battery_low_voltage=_ceil(cells_low * self._cfg.discharge_cutoff_cell_voltage, 2),
        )

    # -- charge voltage --------------------------------------------------

    def _set_phase(self, phase: str, why: str) -> None:
        logger.info("Charge phase %s -> %s: %s", self._phase, phase, why)
        self._phase = phase
        self._balanced = False
        self._balanced_for = 0.0
        self._absorbing_for = 0.0

    def _enter_float(self, why: str, soc: Optional[float]) -> None:
        c = self._cfg
        self._set_phase(FLOAT, why)
        self._soc_armed = soc is not None and soc >= c.rebulk_soc
        if not self._soc_armed:
            # A full pack reading below the re-bulk SoC: the SoC is wrong; do not bounce back to bulk on it.
            logger.warning(
                "Full charge but SoC is %s (below charge.rebulk_soc %.0f %%): SoC looks wrong, "
                "ignored for re-bulk until it reads %.0f %% or more",
                "unknown" if soc is None else "%.1f %%" % soc,
                c.rebulk_soc,
                c.rebulk_soc,
            )

    def _advance_phase(self, units: Sequence[_Unit], now: float, spread: Optional[float], cells: int) -> None:
        """Bulk -> Absorption -> Float -> Bulk; only called with complete, fresh data."""
        c = self._cfg
        soc = min((u.soc for u in units if u.soc is not None), default=None)
        dt = now - self._last_complete if self._last_complete is not None and now > self._last_complete else 0.0
        if units and all(u.full() for u in units):
            self._since_full = 0.0
            if self._full_due:
                self._full_due = False
                logger.info("Full charge done: every unit reports full (SoC %s)", _soc_text(soc))
                if self._phase != FLOAT:
                    self._enter_float("full charge done, the BMS reports full", soc)
                return
        if spread is None:
            return
        if self._phase == FLOAT:
            if self._full_due:
                self._set_phase(BULK, "full charge due")
                return
            if soc is not None and soc >= c.rebulk_soc:
                self._soc_armed = True
            if self._soc_armed and soc is not None and soc < c.rebulk_soc:
                self._set_phase(BULK, "SoC %.1f %% below %.0f %%" % (soc, c.rebulk_soc))
            elif spread >= c.rebulk_cell_spread:
                self._set_phase(BULK, "cell spread %.3f V reached %.3f V" % (spread, c.rebulk_cell_spread))
            return
        if self._cvl.value is None:
            return
        pack = min(u.pack_voltage for u in units if u.pack_voltage is not None)
        # "At CVL" means at the target (never above the published CVL): while CVL still climbs (after
        # float, after a stop) a pack held at that lower CVL is not full.  Only while the high-cell rule
        # holds CVL below the target does that lower CVL count: the bank is then as full as its
        # highest cell allows.
        target = self._top(cells)[0]
        reference = min(target, self._cvl.value) if self._cell_capped else target
        if self._phase == BULK and pack >= reference - cells * c.target_cell_margin:
            self._set_phase(ABSORPTION, "pack %.2f V at CVL %.2f V" % (pack, reference))
            return
        if self._phase != ABSORPTION:
            return
        if pack < reference - cells * c.absorption_cancel_cell_drop:
            self._set_phase(BULK, "pack %.2f V fell %.2f V below CVL %.2f V" % (pack, reference - pack, reference))
            return
        self._absorbing_for += dt
        was_balanced = self._balanced
        if spread > c.balanced_cell_spread + SPREAD_NOISE:
            self._balanced = False
            self._balanced_for = 0.0
        elif spread <= c.balanced_cell_spread:
            self._balanced = True
        if was_balanced and self._balanced:
            self._balanced_for += dt
        timed_out = c.absorption_max_time > 0 and self._absorbing_for >= c.absorption_max_time
        if self._full_due:
            if timed_out:
                self._full_due = False
                self._since_full = 0.0
                logger.warning("Full charge: no unit-wide full report after %.0f s of absorption "
                               "(charge.absorption_max_time); trying again in %g days",
                               self._absorbing_for, c.full_charge_days)
                self._enter_float("%.0f s in absorption without a full report" % self._absorbing_for, soc)
        elif self._balanced and self._balanced_for >= c.absorption_time:
            self._enter_float(
                "%.0f s at CVL %.2f V with cells balanced (spread %.3f V)" % (self._balanced_for, reference, spread),
                soc,
            )
        elif timed_out:
            self._enter_float(
                "%.0f s in absorption (charge.absorption_max_time), cell spread %.3f V" % (self._absorbing_for, spread),
                soc,
            )

    def _target_cell_voltage(self) -> float:
        c = self._cfg
        per_cell = max(c.bulk_cell_voltage, c.full_charge_cell_voltage) if self._full_due else c.bulk_cell_voltage
        return min(per_cell, c.max_cell_voltage)

    def _pack_ceiling(self, cells: int) -> Candidate:
        """battery.max_charge_voltage when set, else the ceiling for the cell count (auto)."""
        cap = self._bat.charge_voltage_cap
        if cap is not None:
            return cap, Reason("pack max", "battery.max_charge_voltage %.2f V" % cap)
        ceiling = AUTO_PACK_CEILINGS.get(cells, cells * LFP_CELL_MAX)
        return ceiling, Reason("pack max", "%d-cell pack ceiling %.2f V" % (cells, ceiling))

    def _top(self, cells: int) -> Candidate:
        """The bulk target (the full-charge target while one is due), under every configured ceiling."""
        c = self._cfg
        per_cell = self._target_cell_voltage()
        if self._full_due and per_cell > c.bulk_cell_voltage:
            reason = Reason("full charge", "full charge %.3f V x %d cells (due every %g days)"
                            % (per_cell, cells, c.full_charge_days))
        else:
            reason = Reason("bulk", "bulk %.3f V x %d cells" % (c.bulk_cell_voltage, cells))
        ceilings: List[Candidate] = [
            self._pack_ceiling(cells),
            (
                cells * c.max_cell_voltage,
                Reason("cell max", "max cell %.3f V x %d cells" % (c.max_cell_voltage, cells)),
            ),
        ]
        if cells == 15:
            ceilings.append(
                (PYLONTECH_15S_MAX_VOLTAGE, Reason("15s max", "15-cell ceiling %.2f V" % PYLONTECH_15S_MAX_VOLTAGE))
            )
        return _lowest([(cells * per_cell, reason)] + ceilings)

    def _voltage(
        self, units: Sequence[_Unit], now: float, cells: int, incomplete: Optional[str], stopped: Optional[str]
    ) -> Tuple[float, str]:
        c = self._cfg
        top = self._top(cells)
        floating = _lowest(
            [
                (
                    cells * min(c.float_cell_voltage, c.bulk_cell_voltage),
                    Reason("float", "float %.3f V x %d cells" % (c.float_cell_voltage, cells)),
                ),
                top,
            ]
        )
        floor = min(cells * c.discharge_cutoff_cell_voltage, floating[0])
        target = floating if (self._phase == FLOAT or incomplete is not None) else top

        candidates: List[Candidate] = [target]
        packs = [u.pack_voltage for u in units if u.pack_voltage is not None]
        if stopped is not None and packs:
            # CCL 0 does not stop every charger (DVCC leaves solar chargers alone under ESS with feed-in of
            # excess DC PV): a CVL at the pack's own voltage does; never below the discharge cut-off.
            candidates.append(
                (max(min(packs), floor), Reason("stopped", "charging stopped (%s): at most the pack's %.2f V"
                                                % (stopped, min(packs))))
            )
        near: Optional[_Unit] = None
        for u in units:
            high = u.cell_high_now
            if high is None or u.pack_voltage is None:
                continue
            over = u.overshoot(c.max_cell_voltage)
            if over > 0.0:
                text = "cell %s %.3f V above %.3f V" % (high.id, high.value, c.max_cell_voltage)
                candidates.append((max(u.pack_voltage - over, floor), Reason("cell high " + high.id, text)))
            elif high.value >= c.max_cell_voltage - c.max_cell_voltage_margin:
                near = u
        value, reason = _lowest(candidates)
        previous = self._cvl.value
        if (
            len(candidates) == 1
            and near is not None
            and near.cell_high_now is not None
            and previous is not None
            and previous < value
        ):
            # A cell just below its limit: hold CVL (rising now would only push it over again).
            value = previous
            reason = Reason(
                "cell near " + near.cell_high_now.id,
                "cell %s %.3f V within %.3f V of %.3f V"
                % (near.cell_high_now.id, near.cell_high_now.value, c.max_cell_voltage_margin, c.max_cell_voltage),
            )
        if reason.key.startswith("cell "):
            self._cell_capped = True
        elif previous is not None and previous >= top[0] - 1e-9:
            self._cell_capped = False
        result = self._cvl.step(value, reason, now, c.cvl_recovery_rate, incomplete, 0.1)
        if stopped is not None:
            self._cvl.hold_from(now)
        return result

    # -- currents ------------------------------------------------------

    def _current(
        self,
        side: _Side,
        units: Sequence[_Unit],
        now: float,
        fresh: bool,
        blind: Optional[str],
        incomplete: Optional[str],
    ) -> Tuple[float, str, Optional[str]]:
        """CCL or DCL, its reason, and why this direction must stop (None when it need not).

        Without data (``blind``) it is 0, or held for the side's grace time
        when the last good poll had its worst cell in the full-current range."""
        limit = self._ccl if side.charge else self._dcl
        state = self._blind[side.name]
        online = max(1, len(units))
        rate = self._cfg.current_recovery_rate * online
        log_step = max(1.0, 0.1 * side.per_battery * online)
        if blind is None:
            state.since = None
            cells = [e.value for e in (u.cell_high if side.charge else u.cell_low for u in units) if e is not None]
            state.last_cell = (max if side.charge else min)(cells, default=None)
            candidates, stops = self._current_candidates(side, units)
            value, reason = _lowest(candidates)
            result = limit.step(value, reason, now, rate, incomplete, log_step)
            if stops:
                limit.hold_from(now)
            return result + (_first_text(stops),)
        if state.since is None:
            state.since = now
            state.grace = (
                side.grace > 0
                and bool(limit.value)
                and state.last_cell is not None
                and side.cell_curve(state.last_cell) >= 1.0
            )
        if state.grace and now - state.since < side.grace:
            text = "no data: %s; held up to %.0f s (last %s cell %.3f V)" % (
                blind,
                side.grace,
                "highest" if side.charge else "lowest",
                state.last_cell or 0.0,
            )
            # What fresh data still says (units online, other units' cells, held readings, states) may lower it.
            known, stops = self._current_candidates(side, units) if fresh else ([], [])
            value, reason = _lowest([(limit.value or 0.0, Reason("grace", text))] + known)
            return limit.step(value, reason, now, 0.0, incomplete, log_step) + (_first_text(stops),)
        reason = Reason("blind", "no data: %s" % blind)
        return limit.step(0.0, reason, now, rate, incomplete, log_step) + (reason.text,)

    def _maximum(self, side: _Side, units: Sequence[_Unit]) -> List[Candidate]:
        """The configured maximum and the units' own rating, x the units able to take current."""
        able = [u for u in units if not u.fet_off(side.fet_key)]
        off = [u.address for u in units if u.fet_off(side.fet_key)]
        cap_text = "max %.1f A x %d units" % (side.per_battery, len(able))
        if off:
            cap_text += " (%s)" % _plural(off, "%s switched off by its BMS" % side.name)
        out: List[Candidate] = [(side.per_battery * len(able), Reason("max", cap_text))]
        infos = [u.battery.info for u in able if u.battery.info is not None]
        ratings = [
            r
            for r in (i.max_charge_current if side.charge else i.max_discharge_current for i in infos)
            if r is not None
        ]
        if ratings:
            out.append(
                (min(ratings) * len(able), Reason("bms", "BMS rating %.1f A x %d units" % (min(ratings), len(able))))
            )
        return out

    def _current_candidates(
        self, side: _Side, units: Sequence[_Unit], share: Optional[float] = None
    ) -> Tuple[List[Candidate], List[Reason]]:
        """Every rule's value for one direction, with its reason (the limit is the lowest), and the
        rules that stop this direction outright (each also a 0 among the candidates)."""
        c = self._cfg
        out = self._maximum(side, units)
        if share is not None:
            out.append((share, Reason("share", "share of the bank maximum %.1f A" % share)))
        bank_max = _lowest(out)[0]
        stops: List[Reason] = []

        def derate(fraction: float, reason: Reason) -> None:
            if fraction <= 0.0:
                stops.append(reason)
            else:
                out.append((fraction * bank_max, reason))

        def cell_rule(voltage: float, key: Reason) -> None:
            """The cut-off, then the curve, for the highest (charge) / lowest cell voltage."""
            if voltage >= side.cutoff if side.charge else voltage <= side.cutoff:
                where = "at/above" if side.charge else "at/below"
                stops.append(Reason(key.key, "%s %s cut-off %.3f V" % (key.text, where, side.cutoff)))
            derate(side.cell_curve(voltage), key)

        cells = [u.cell_high if side.charge else u.cell_low for u in units]
        known = [e for e in cells if e is not None]
        if known:
            worst = (max if side.charge else min)(known, key=lambda e: e.value)
            cell_rule(worst.value, Reason("cell " + worst.id, "cell %s %.3f V" % (worst.id, worst.value)))
        # A unit whose cells are unknown (their last values are held above) still shows its pack: a pack that
        # sags (climbs) while the cells are unknown lowers the limit as its cells would.
        for u in units:
            average = u.unseen_cell_average(side.charge)
            if average is not None:
                cell_rule(average, Reason("average B%d" % u.address, "B%d cells unknown, pack %.2f V: %.3f V per "
                                          "cell on average" % (u.address, u.pack_voltage or 0.0, average)))

        # cell temperature: window, then curve on both the coldest and the hottest
        temps = [e for u in units for e in (u.temp_low, u.temp_high) if e is not None]
        middle = (side.temp_min + side.temp_max) / 2.0
        for e in sorted(temps, key=lambda e: -abs(e.value - middle)):  # the most extreme names the reason
            reason = Reason("temp " + e.id, "cell temperature %s %.1f °C" % (e.id, e.value))
            if e.value < side.temp_min or e.value > side.temp_max:
                stops.append(
                    Reason(
                        reason.key,
                        "%s outside %s window %.0f..%.0f °C" % (reason.text, side.name, side.temp_min, side.temp_max),
                    )
                )
            derate(side.temp_curve(e.value), reason)

        for u in units:
            if u.electronics is not None:
                temp, label = u.electronics
                derate(
                    self._electronics_curve(temp),
                    Reason("%s B%d" % (label, u.address), "%s B%d %.1f °C" % (label, u.address, temp)),
                )

        socs = [(u.soc, u.address) for u in units if u.soc is not None]
        if c.soc_derating and socs:
            soc, address = (max if side.charge else min)(socs)
            derate(side.soc_curve(soc), Reason("soc B%d" % address, "SoC B%d %.0f %%" % (address, soc)))

        if c.bms_states_block:
            for u in units:
                self._bms_signals(side, u, bank_max, out, stops)
        least = _lowest(out)
        if not stops and _floor(least[0], 1) <= 0.0:
            stops.append(least[1])  # no current at all (a 0 A maximum, every switch off): a stop like the others
        # A stop listed first names the reason when several rules give 0.
        return out + [(0.0, r) for r in stops], stops

    def _bms_signals(self, side: _Side, u: _Unit, bank_max: float, out: List[Candidate], stops: List[Reason]) -> None:
        """A unit's own status words and protection signals: each stops its direction.

        One exception keeps an empty bank from a deadlock: a unit at its low cut-off (a voltage state
        Low / Under, or a cell at the discharge cut-off) whose SysError / SysAlarm would stop charging
        may still charge at ``empty_charge_percent`` of the maximum (other rules still apply)."""
        c = self._cfg
        empty = side.charge and (
            u.pack_low or (u.cell_low is not None and u.cell_low.value <= c.discharge_cutoff_cell_voltage)
        )
        for state in u.states:
            if not self._state_blocks(state, side.charge, u.current):
                continue
            if empty and state.column in ("Base.St", "SysAlarm.St"):
                out.append(
                    (
                        c.empty_charge_percent / 100.0 * bank_max,
                        Reason(
                            "empty " + state.where,
                            "BMS state %s at the low cut-off: %.0f %% allowed to recharge"
                            % (state.text, c.empty_charge_percent),
                        ),
                    )
                )
                continue
            stops.append(Reason("state " + state.where, "BMS state %s" % state.text))
        detail = u.battery.detail
        if detail is None:
            return
        events = detail.power_events or 0
        for bit, name in _CHARGE_STOP_EVENTS if side.charge else _DISCHARGE_STOP_EVENTS:
            if events & bit:
                stops.append(
                    Reason("event B%d 0x%X" % (u.address, bit), "B%d Power Events 0x%X: %s" % (u.address, events, name))
                )
        if side.charge and detail.system_fault:
            stops.append(Reason("fault B%d" % u.address, "B%d System Fault 0x%X" % (u.address, detail.system_fault)))

    @staticmethod
    def _state_blocks(state: _State, charge: bool, current: Optional[float]) -> bool:
        """Whether a unit's status word stops charge (or discharge).

        Voltage: High / Over / unknown words stop charge, Low / Under stop
        discharge.  Temperature: any abnormal word stops charge; an alarm-stage
        word (Over / Under) also stops discharge.  ``CTemp.`` / ``DTemp.``
        (charge / discharge temperature) act on their own direction only.
        Current (``Curr.St``): the direction the current flows, both when it
        is near 0 (the BMS may already have cut it).  ``Base.St SysError`` and
        ``SysAlarm.St`` stop charge.
        """
        column = state.column
        if column in ("Volt.St", "B.V.St", "Volt. State"):
            return state.direction != "low" if charge else state.direction == "low"
        if column == "CTemp. State":
            return charge
        if column == "DTemp. State":
            return not charge and state.level >= ALARM
        if column in ("Temp.St", "B.T.St", "M.T.St", "Temp. State"):
            return charge or state.level >= ALARM
        if column in ("Curr.St", "Curr. State"):
            flowing = current or 0.0
            return abs(flowing) <= CHARGING_CURRENT or (flowing > 0) == charge
        if column in ("Base.St", "SysAlarm.St"):
            return charge
        return False

    # -- per unit ----------------------------------------------------------

    def _unit_limits(self, u: _Unit, units: Sequence[_Unit], cells: int) -> UnitLimits:
        """One unit's own limits: the rules on its data alone, under its share of the bank maximum."""
        found: List[Tuple[float, str]] = []
        for side in self._sides:
            share = _lowest(self._maximum(side, units))[0] / max(1, len(units))
            gap = u.row_gap if side.charge else u.row_gap_discharge
            if gap is not None:
                found.append((0.0, "no data: B%d reports %s" % (u.address, gap)))
                continue
            value, reason = _lowest(self._current_candidates(side, [u], share)[0])
            found.append((_floor(max(value, 0.0), 1), reason.text))
        (charge, charge_reason), (discharge, discharge_reason) = found
        return UnitLimits(
            address=u.address,
            charge_current=charge,
            discharge_current=discharge,
            blocks_charge=charge <= 0.0,
            blocks_discharge=discharge <= 0.0,
            charge_reason=charge_reason,
            discharge_reason=discharge_reason,
            alarms=self._own_alarm_levels(u, cells),
        )

    # -- restart -------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        """What a restart needs to resume (JSON-ready); times as seconds before the last poll.

        The units seen are not kept: restarting is how a unit removed for good stops counting as missing."""
        now = self._last_now

        def ago(moment: Optional[float]) -> Optional[float]:
            return None if moment is None or now is None else max(0.0, now - moment)

        return {
            "version": STATE_VERSION,
            "phase": self._phase,
            "soc_armed": self._soc_armed,
            "balanced": self._balanced,
            "balanced_for": self._balanced_for,
            "absorbing_for": self._absorbing_for,
            "cell_capped": self._cell_capped,
            "since_full": self._since_full,
            "full_due": self._full_due,
            # each unit's last readings, so a reading that vanishes across the restart keeps its effect
            "readings": {
                str(address): {name: getattr(row, name) for name in _HELD_READINGS + tuple(_HELD_IDS.values())
                               if getattr(row, name) is not None}
                for address, row in sorted(self._last_rows.items())
            },
            # the protection signals of each unit's last pwr N, standing until pwr N is read again
            "protections": {
                str(address): {"power_events": p.power_events, "system_fault": p.system_fault, "switches": p.extra}
                for address, p in sorted(self._protections.items())
            },
            # the cell counts the console told, so a restart does not wait for them again
            "cell_counts": self._cell_counts.state(),
            "limits": {
                limit.name: {"value": limit.value, "reduced_ago": ago(limit.down_at)}
                for limit in (self._cvl, self._ccl, self._dcl)
            },
        }

    def restore(self, data: Mapping[str, Any], age: float) -> bool:
        """Resume from ``state()`` saved ``age`` seconds ago (applied at the next poll).

        Only a recent state (``RESUME_MAX_AGE``) resumes phase, holds and limits; an older one
        only keeps the time since the last full charge.  Returns whether the state resumes."""
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            logger.warning("Charge control: the saved state has an unknown format; starting afresh")
            return False
        since_full = data.get("since_full")
        if isinstance(since_full, (int, float)) and since_full >= 0 and age >= 0:
            self._since_full = float(since_full) + age
        if not 0.0 <= age <= RESUME_MAX_AGE:
            logger.info("Charge control: the saved state is %.0f s old; starting afresh (only the time since the "
                        "last full charge is kept)", age)
            return False
        self._resume = (dict(data), age)
        return True

    def _apply_resume(self, now: float) -> None:
        data, age = self._resume or ({}, 0.0)
        self._resume = None
        self._settled = True
        if data.get("phase") in (BULK, ABSORPTION, FLOAT):
            self._phase = str(data["phase"])
        self._soc_armed = bool(data.get("soc_armed", True))
        self._balanced = bool(data.get("balanced", False))
        self._cell_capped = bool(data.get("cell_capped", False))
        self._full_due = bool(data.get("full_due", False))
        for name in ("balanced_for", "absorbing_for"):
            value = data.get(name)
            if isinstance(value, (int, float)) and value >= 0:
                setattr(self, "_" + name, float(value))
        readings = data.get("readings")
        if isinstance(readings, Mapping):
            for address, values in readings.items():
                if str(address).isdigit() and isinstance(values, Mapping):
                    known = {k: v for k, v in values.items() if k in _HELD_READINGS or k in _HELD_IDS.values()}
                    self._last_rows.setdefault(int(address), PowerRow(int(address), True, **known))
        protections = data.get("protections")
        if isinstance(protections, Mapping):
            for address, saved_signals in protections.items():
                if str(address).isdigit() and isinstance(saved_signals, Mapping):
                    self._restore_protection(int(address), saved_signals)
        self._cell_counts.restore(data.get("cell_counts"))
        saved = data.get("limits") or {}
        for limit in (self._cvl, self._ccl, self._dcl):
            entry = saved.get(limit.name) if isinstance(saved, Mapping) else None
            if isinstance(entry, Mapping):
                limit.resume(entry.get("value"), entry.get("reduced_ago"), now, age)
        logger.info("Charge control resumed from a state saved %.0f s ago: %s, CVL %s V, CCL %s A, DCL %s A",
                    age, self._phase, *(limit.fmt(limit.value) for limit in (self._cvl, self._ccl, self._dcl)))

    def _restore_protection(self, address: int, saved: Mapping[str, Any]) -> None:
        """One unit's saved pwr N signals (``state()["protections"]``); anything malformed is ignored."""
        numbers = [saved.get(name) for name in ("power_events", "system_fault")]
        events, fault = (n if isinstance(n, int) and not isinstance(n, bool) else None for n in numbers)
        switches = saved.get("switches")
        extra = {str(k): str(v) for k, v in switches.items()} if isinstance(switches, Mapping) else {}
        protection = _protection(PowerDetail(address, power_events=events, system_fault=fault, extra=extra))
        if protection is not None:
            self._protections.setdefault(address, protection)

    @property
    def phase(self) -> str:
        return self._phase

    @property
    def stops(self) -> Tuple[bool, bool]:
        """Whether CCL and DCL are 0 now (the state file is written at once when this changes)."""
        return self._ccl.published == 0.0, self._dcl.published == 0.0

    @property
    def polled(self) -> bool:
        """Whether ``update`` has run (there is a state worth saving)."""
        return self._last_now is not None

    # -- alarms ----------------------------------------------------------

    def _log_alarm(self, name: str, level: int, reason: str) -> None:
        old = self._logged_alarms[name]
        if level != old:
            (logger.warning if level > old else logger.info)(
                "Alarm %s %d -> %d%s", name, old, level, ": " + reason if reason else ""
            )
            self._logged_alarms[name] = level

    def _alarm_levels(
        self, units: Sequence[_Unit], summary: BankSummary, spread: Optional[float], cells: int, missing: Sequence[int]
    ) -> Dict[str, int]:
        c = self._cfg
        a = _Alarms()
        if missing:
            a.set("BmsCable", WARNING, _plural(missing, "missing"))
        if not units:
            a.set("BmsCable", ALARM, "no unit reporting")
        charging = (summary.current or 0.0) > CHARGING_CURRENT
        for u in units:
            self._unit_measurement_alarms(a, u, cells, charging)
        if spread is not None:
            a.threshold(
                "CellImbalance", spread, c.imbalance_warning, c.imbalance_alarm, True, "cell spread %.3f V" % spread
            )
        if summary.soc is not None:
            a.threshold("LowSoc", summary.soc, c.low_soc_warning, c.low_soc_alarm, False, "SoC %.1f %%" % summary.soc)
        a.merge_high_current()
        for name in ALARM_NAMES:
            self._log_alarm(name, a.levels[name], a.reasons.get(name, ""))
        return a.levels

    def _own_alarm_levels(self, u: _Unit, cells: int) -> Dict[str, int]:
        """The alarms one unit causes on its own (its cells, its spread, its SoC, its words)."""
        c = self._cfg
        a = _Alarms()
        self._unit_measurement_alarms(a, u, cells, (u.current or 0.0) > CHARGING_CURRENT)
        if u.cell_high is not None and u.cell_low is not None:
            spread = u.cell_high.value - u.cell_low.value
            a.threshold("CellImbalance", spread, c.imbalance_warning, c.imbalance_alarm, True,
                        "B%d cell spread %.3f V" % (u.address, spread))
        if u.soc is not None:
            a.threshold("LowSoc", u.soc, c.low_soc_warning, c.low_soc_alarm, False, "B%d SoC %.1f %%" % (u.address, u.soc))
        a.merge_high_current()
        return a.levels

    def _unit_measurement_alarms(self, a: _Alarms, u: _Unit, cells: int, charging: bool) -> None:
        """One unit's share of the alarms: its cells, pack, temperatures, electronics and status words."""
        c = self._cfg
        if u.cell_high is not None:
            a.threshold(
                "HighCellVoltage",
                u.cell_high.value,
                c.charge_cutoff_cell_voltage,
                LFP_CELL_MAX,
                True,
                "cell %s %.3f V" % (u.cell_high.id, u.cell_high.value),
            )
        if u.cell_low is not None:
            a.threshold(
                "LowCellVoltage",
                u.cell_low.value,
                c.discharge_cutoff_cell_voltage,
                LFP_CELL_MIN,
                False,
                "cell %s %.3f V" % (u.cell_low.id, u.cell_low.value),
            )
        if u.pack_voltage is not None:
            unit_cells = u.cell_count or cells  # each unit's pack against its own cell count
            text = "B%d pack %.2f V" % (u.address, u.pack_voltage)
            a.threshold(
                "HighVoltage",
                u.pack_voltage,
                unit_cells * c.charge_cutoff_cell_voltage,
                unit_cells * LFP_CELL_MAX,
                True,
                text,
            )
            a.threshold(
                "LowVoltage",
                u.pack_voltage,
                unit_cells * c.discharge_cutoff_cell_voltage,
                unit_cells * LFP_CELL_MIN,
                False,
                text,
            )
        for e in (u.temp_high, u.temp_low):
            if e is None:
                continue
            text = "cell temperature %s %.1f °C" % (e.id, e.value)
            a.threshold(
                "HighTemperature",
                e.value,
                c.charge_max_temperature + 1e-9,
                c.discharge_max_temperature + 1e-9,
                True,
                text,
            )
            a.threshold(
                "LowTemperature",
                e.value,
                c.charge_min_temperature - 1e-9,
                c.discharge_min_temperature - 1e-9,
                False,
                text,
            )
            if charging and e.value > c.charge_max_temperature:
                a.set("HighChargeTemperature", ALARM, "charging at " + text)
            if charging and e.value < c.charge_min_temperature:
                a.set("LowChargeTemperature", ALARM, "charging at " + text)
        if u.electronics is not None:
            fraction = self._electronics_curve(u.electronics[0])
            if fraction < 1.0:
                a.set(
                    "HighInternalTemperature",
                    ALARM if fraction <= 0.0 else WARNING,
                    "%s B%d %.1f °C" % (u.electronics[1], u.address, u.electronics[0]),
                )
        self._unit_alarms(a, u)

    @staticmethod
    def _unit_alarms(a: _Alarms, u: _Unit) -> None:
        """Alarms from a unit's status words, events and ratings."""
        for s in u.states:
            column, up = s.column, s.direction == "high"
            if column == "Volt.St":
                a.set(
                    "HighVoltage" if up else "LowVoltage" if s.direction == "low" else "InternalFailure",
                    s.level,
                    s.text,
                )
            elif column in ("B.V.St", "Volt. State"):
                name = "HighCellVoltage" if up else "LowCellVoltage" if s.direction == "low" else "InternalFailure"
                a.set(name, s.level, s.text)
            elif column == "M.T.St":
                a.set("HighInternalTemperature", s.level, s.text)
            elif column == "CTemp. State":
                a.set("HighChargeTemperature" if up else "LowChargeTemperature", s.level, s.text)
            elif column in ("Temp.St", "B.T.St", "Temp. State", "DTemp. State"):
                a.set("HighTemperature" if up else "LowTemperature", s.level, s.text)
            elif column in ("Curr.St", "Curr. State"):
                current = u.current or 0.0
                name = "HighChargeCurrent" if current > 0 else "HighDischargeCurrent" if current < 0 else "HighCurrent"
                a.set(name, s.level, s.text)
            else:  # Base.St SysError, SysAlarm.St
                a.set("InternalFailure", s.level, s.text)
        detail = u.battery.detail
        if detail is not None:
            events = detail.power_events or 0
            for bit, name, level in _POWER_EVENT_ALARMS:
                if events & bit:
                    a.set(name, level, "B%d Power Events 0x%X" % (u.address, events))
            if detail.system_fault:
                a.set("InternalFailure", ALARM, "B%d System Fault 0x%X" % (u.address, detail.system_fault))
            kind = _state_kind(detail.soh_state)
            if kind is not None and detail.soh_state is not None:
                a.set("StateOfHealth", WARNING, "B%d Soh. Status %s" % (u.address, detail.soh_state.strip()))
        info = u.battery.info
        if info is not None and u.current is not None:
            if info.max_charge_current and u.current > info.max_charge_current:
                a.set(
                    "HighChargeCurrent",
                    WARNING,
                    "B%d %.1f A above its rating %.1f A" % (u.address, u.current, info.max_charge_current),
                )
            if info.max_discharge_current and -u.current > info.max_discharge_current:
                a.set(
                    "HighDischargeCurrent",
                    WARNING,
                    "B%d %.1f A above its rating %.1f A" % (u.address, -u.current, info.max_discharge_current),
                )
