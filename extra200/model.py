"""The battery bank as the rest of the program sees it: typed records in SI units.

Parsers (``parsing``) turn console text into these records; everything
after them (derived values, charge limits, outputs) reads only these.

Conventions, kept everywhere:

* Units are SI: volts, amperes, degrees Celsius, ampere-hours, percent, watts.
  The console's mV / mA / m°C / mAh are converted once, in the parser.
* Current sign: positive = the battery is charging, negative = discharging
  (the console's and Victron's convention).
* ``None`` means "unknown" (a column this firmware does not print, a ``-``
  placeholder, a unit that is absent).  Nothing is ever invented as 0.
* Addresses are the console's unit numbers (1 = master); cell indices are the
  console's 0-based indices.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

# A 48 V pack (15 or 16 LiFePO4 cells) never reaches this; a high-voltage stack (Force H) is far above it.
LV_PACK_MAX_VOLTAGE = 65.0  # V
LV_MAX_CELLS = 16


@dataclass(frozen=True)
class PowerRow:
    """One row of the whole-bank ``pwr`` table (or the summary of ``pwr N``)."""

    address: int
    present: bool  # False for an ``Absent`` slot; every other field is then None
    voltage: Optional[float] = None  # pack voltage, V
    current: Optional[float] = None  # A, + charging
    temperature: Optional[float] = None  # BMS temperature, °C
    cell_temp_low: Optional[float] = None  # °C
    cell_temp_high: Optional[float] = None  # °C
    cell_temp_low_id: Optional[int] = None  # 0-based cell index (newer firmware only)
    cell_temp_high_id: Optional[int] = None
    cell_voltage_low: Optional[float] = None  # V
    cell_voltage_high: Optional[float] = None  # V
    cell_voltage_low_id: Optional[int] = None
    cell_voltage_high_id: Optional[int] = None
    base_state: Optional[str] = None  # Charge / Dischg / Idle / Balance / SysError ...
    voltage_state: Optional[str] = None  # Normal / High / Low / ...
    current_state: Optional[str] = None
    temperature_state: Optional[str] = None
    soc: Optional[float] = None  # %, the console's "Coulomb" column
    time: Optional[str] = None  # the unit's RTC as printed, "YYYY-MM-DD hh:mm:ss"
    battery_voltage_state: Optional[str] = None  # B.V.St
    battery_temperature_state: Optional[str] = None  # B.T.St
    mos_temperature: Optional[float] = None  # °C; None where the unit has no sensor ("-")
    mos_temperature_state: Optional[str] = None
    system_alarm_state: Optional[str] = None  # SysAlarm.St (newest firmware)
    barcode: Optional[str] = None  # printed by some Pytes firmware
    device_type: Optional[str] = None  # Pytes "DevType"


@dataclass(frozen=True)
class PowerDetail:
    """The key : value detail of one unit (``pwr N``)."""

    address: int
    voltage: Optional[float] = None  # V
    current: Optional[float] = None  # A, + charging
    temperature: Optional[float] = None  # °C
    soc: Optional[float] = None  # %
    total_capacity: Optional[float] = None  # Ah ("Total Coulomb")
    # Ah of charge left, where a firmware prints it.  None on every firmware seen so far: Pytes'
    # "Real Coulomb" is the capacity, not the charge left (the parser keeps it in ``extra``).
    remaining_capacity: Optional[float] = None
    max_voltage: Optional[float] = None  # V
    charge_times: Optional[int] = None  # a transition counter, NOT the cycle count
    base_state: Optional[str] = None
    voltage_state: Optional[str] = None
    current_state: Optional[str] = None
    temperature_state: Optional[str] = None
    coulomb_state: Optional[str] = None  # Normal / Full
    soh_state: Optional[str] = None
    heater_state: Optional[str] = None
    protect_enabled: Tuple[str, ...] = ()
    bat_events: Optional[int] = None  # bit field; names in events.py
    power_events: Optional[int] = None
    system_fault: Optional[int] = None
    extra: Dict[str, str] = field(default_factory=dict)  # every other "key : value" as printed


@dataclass(frozen=True)
class CellRow:
    """One cell row of ``bat N``."""

    index: int  # 0-based, as printed
    voltage: Optional[float] = None  # V
    current: Optional[float] = None  # A (the module current repeated on every row)
    temperature: Optional[float] = None  # °C (one sensor per group of cells)
    base_state: Optional[str] = None
    voltage_state: Optional[str] = None
    current_state: Optional[str] = None
    temperature_state: Optional[str] = None
    soc: Optional[float] = None  # %
    coulomb: Optional[float] = None  # Ah
    balancing: Optional[bool] = None  # BAL column: Y / N
    extra: Dict[str, str] = field(default_factory=dict)  # columns not named above, by header


@dataclass(frozen=True)
class CellTable:
    """The whole ``bat N`` reply."""

    address: int
    cells: Tuple[CellRow, ...]


@dataclass(frozen=True)
class DeviceInfo:
    """``info N``: identity and ratings of one unit."""

    address: Optional[int] = None
    manufacturer: Optional[str] = None
    device_name: Optional[str] = None  # model: US2000C, US3000C, E-BOX-48100V-D ...
    board_version: Optional[str] = None
    main_soft_version: Optional[str] = None
    soft_version: Optional[str] = None
    barcode: Optional[str] = None
    specification: Optional[str] = None  # as printed, e.g. "48V/50AH"
    nominal_capacity: Optional[float] = None  # Ah, from the specification
    cell_count: Optional[int] = None
    max_discharge_current: Optional[float] = None  # A, positive
    max_charge_current: Optional[float] = None  # A, positive
    console_baud: Optional[int] = None
    extra: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Statistics:
    """``stat N``: lifetime counters of one unit."""

    address: Optional[int] = None
    cycle_count: Optional[int] = None  # "CYCLE Times"
    soh: Optional[float] = None  # %, absent on older firmware
    charge_times: Optional[int] = None  # transition counter, not cycles
    counters: Dict[str, str] = field(default_factory=dict)  # every "label : value" as printed


@dataclass
class Battery:
    """Everything known about one unit, merged from the commands that describe it.

    ``row`` comes from the latest ``pwr`` poll; the others are refreshed less
    often and keep their last good value (with the time it was read).
    """

    address: int
    row: Optional[PowerRow] = None
    detail: Optional[PowerDetail] = None
    cells: Optional[CellTable] = None
    info: Optional[DeviceInfo] = None
    stats: Optional[Statistics] = None
    row_time: Optional[float] = None  # monotonic time of each part's last good read
    detail_time: Optional[float] = None
    cells_time: Optional[float] = None
    detail_due: bool = False  # a status column turned abnormal: read ``pwr N`` (events) at the next chance
    info_time: Optional[float] = None
    stats_time: Optional[float] = None

    @property
    def present(self) -> bool:
        return self.row is not None and self.row.present

    @property
    def barcode(self) -> Optional[str]:
        if self.info is not None and self.info.barcode:
            return self.info.barcode
        if self.row is not None and self.row.barcode:
            return self.row.barcode
        return None

    @property
    def total_capacity(self) -> Optional[float]:
        """Rated capacity in Ah: ``pwr N`` Total Coulomb, else the ``info`` specification."""
        if self.detail is not None and self.detail.total_capacity:
            return self.detail.total_capacity
        if self.info is not None and self.info.nominal_capacity:
            return self.info.nominal_capacity
        return None

    @property
    def cell_count(self) -> Optional[int]:
        if self.cells is not None and self.cells.cells:
            return len(self.cells.cells)
        if self.info is not None:
            return self.info.cell_count
        return None


@dataclass
class Bank:
    """The whole bank as read in one poll.

    ``batteries`` holds every unit the console reported present this poll
    (plus configured units that did not answer, with ``row`` None), keyed by
    address.  ``missing`` lists configured addresses that are absent.
    """

    batteries: Dict[int, Battery] = field(default_factory=dict)
    expected: Tuple[int, ...] = ()  # configured addresses; empty = whatever is present
    missing: Tuple[int, ...] = ()
    poll_time: Optional[float] = None  # wall-clock time of the poll (time.time())
    complete: bool = False  # True when every expected unit answered this poll

    def present(self) -> List[Battery]:
        return [b for _, b in sorted(self.batteries.items()) if b.present]

    def high_voltage_units(self) -> List[Battery]:
        """Present units that are high-voltage stacks (Force H: hundreds of volts, dozens of cells), not 48 V packs."""
        return [
            b
            for b in self.present()
            if (b.row is not None and b.row.voltage is not None and b.row.voltage > LV_PACK_MAX_VOLTAGE)
            or (b.cell_count or 0) > LV_MAX_CELLS
        ]
