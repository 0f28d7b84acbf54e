"""The simulated bank: live, thread-safe state of every unit and of the console's battery-side flags.

``Bank`` is the object tests and the timeline change at run time
(``set_absent``, ``set_cell_voltage``, ``set_current``, ``set_silent``,
``cut_next_reply`` ...).  The console renders from ``snapshot``: an immutable
copy with every value already rounded the way the console prints it, so a
reply is always self-consistent (pack voltage = sum of the printed cells,
Vlow/Vhigh = their min/max, Coulomb % = the printed SoC).

Simulated time runs at ``scenario.speed`` times real time (``advance`` adds
to it).  While ``drift`` is on, SoC follows the current (I dt / capacity) and
every cell voltage moves with the SoC; the timeline's changes are applied,
in order, whenever the bank is read or changed.
"""

import datetime
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

from .scenario import CONSOLE_KEYS, Scenario, ScenarioError, check_unit_changes

logger = logging.getLogger(__name__)

# Cell voltage change per percent of SoC while drifting (LiFePO4 plateau, about 0.15 V over 0-100 %).
VOLTS_PER_PERCENT = 0.0015
DEFAULT_CELL_VOLTAGE = 3.300
DEFAULT_TEMPERATURE = 25.0

Target = Union[None, int, str, Iterable[int]]


def _round(value: float) -> int:
    """Round half away from zero (the console's integer printing; Python's round() is to even)."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


@dataclass
class UnitState:
    """Mutable values of one unit (SI units); only ``Bank`` touches these, under its lock."""

    address: int
    present: bool = True
    model: str = ""
    manufacturer: str = ""
    board_version: str = ""
    main_soft_version: str = ""
    soft_version: str = ""
    cells: int = 15
    capacity: float = 50.0  # Ah
    current: float = 0.0  # A, + charging
    state: Optional[str] = None  # None = from the current's sign
    soc: float = 50.0  # %
    cell_volts: List[float] = field(default_factory=list)
    sensor_temps: List[float] = field(default_factory=list)  # one per group of cells
    bms_temp: float = DEFAULT_TEMPERATURE
    mos_temp: Optional[float] = DEFAULT_TEMPERATURE
    barcode: str = ""
    volt_state: str = "Normal"
    curr_state: str = "Normal"
    temp_state: str = "Normal"
    bv_state: str = "Normal"
    bt_state: str = "Normal"
    mos_state: str = "Normal"
    sys_alarm: str = "Normal"
    coul_state: Optional[str] = None  # None = Full at 100 %, else Normal
    soh_state: str = "Normal"
    cell_states: Dict[int, str] = field(default_factory=dict)
    cell_temp_states: Dict[int, str] = field(default_factory=dict)
    balancing: Set[int] = field(default_factory=set)
    bat_events: int = 0
    power_events: int = 0
    system_fault: int = 0
    max_voltage: float = 54.0
    max_charge_current: float = 90.0
    max_discharge_current: float = 90.0
    heater: bool = False
    charge_times: int = 0
    state_seconds: float = 0.0
    stats: Dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitSnapshot:
    """One unit as the console prints it right now: integers in mV, mA, m°C, mAh; strings as printed."""

    address: int
    present: bool
    model: str = ""
    manufacturer: str = ""
    board_version: str = ""
    main_soft_version: str = ""
    soft_version: str = ""
    barcode: str = ""
    cells_mv: Tuple[int, ...] = ()
    current_ma: int = 0
    soc: int = 0  # %
    base_state: str = "Idle"
    sensor_temps_mc: Tuple[int, ...] = ()
    cell_temps_mc: Tuple[int, ...] = ()  # the sensor of each cell's group
    bms_temp_mc: int = 0
    mos_temp_mc: Optional[int] = None
    volt_state: str = "Normal"
    curr_state: str = "Normal"
    temp_state: str = "Normal"
    bv_state: str = "Normal"
    bt_state: str = "Normal"
    mos_state: str = "Normal"
    sys_alarm: str = "Normal"
    coul_state: str = "Normal"
    soh_state: str = "Normal"
    cell_states: Tuple[str, ...] = ()
    cell_temp_states: Tuple[str, ...] = ()
    balancing: Tuple[bool, ...] = ()
    bat_events: int = 0
    power_events: int = 0
    system_fault: int = 0
    capacity_mah: int = 0
    remaining_mah: int = 0
    max_voltage_mv: int = 0
    max_charge_ma: int = 0
    max_discharge_ma: int = 0
    heater: bool = False
    charge_times: int = 0
    state_seconds: int = 0
    stats: Tuple[Tuple[str, int], ...] = ()
    rtc: str = ""

    @property
    def voltage_mv(self) -> int:
        return sum(self.cells_mv)

    @property
    def cell_low_mv(self) -> int:
        return min(self.cells_mv)

    @property
    def cell_high_mv(self) -> int:
        return max(self.cells_mv)

    @property
    def cell_low_index(self) -> int:
        return self.cells_mv.index(self.cell_low_mv)

    @property
    def cell_high_index(self) -> int:
        return self.cells_mv.index(self.cell_high_mv)

    @property
    def temp_low_mc(self) -> int:
        return min(self.cell_temps_mc)

    @property
    def temp_high_mc(self) -> int:
        return max(self.cell_temps_mc)

    @property
    def temp_low_index(self) -> int:
        return self.cell_temps_mc.index(self.temp_low_mc)

    @property
    def temp_high_index(self) -> int:
        return self.cell_temps_mc.index(self.temp_high_mc)

    def stat(self, label: str, default: int = 0) -> int:
        return dict(self.stats).get(label, default)


@dataclass
class ConsoleFlags:
    """Battery-side console state: survives a client closing the port, lost (debug) on power-off."""

    asleep: bool = False
    debug: bool = False
    silent: bool = False
    garbage: float = 0.0  # per-byte probability of a wrong byte in replies
    drop: float = 0.0  # per-byte probability of a lost byte in replies
    cut_after: List[int] = field(default_factory=list)  # the next replies end after this many bytes


# Short names of stat labels accepted in scenario ``stats``.
STAT_ALIASES: Mapping[str, str] = {
    "cycles": "CYCLE Times",
    "soh": "SOH",
    "charge_times": "Charge Times",
    "shut_times": "Shut Times",
    "reset_times": "Reset Times",
    "dsg_cap": "Dsg Cap",
}


class Bank:
    """Live state of a simulated bank; every public method is thread-safe."""

    def __init__(self, scenario: Scenario, clock: Callable[[], float] = time.monotonic) -> None:
        self.scenario = scenario
        self._clock = clock
        self._lock = threading.RLock()
        self._start = clock()
        self._offset = 0.0  # simulated seconds added by advance()
        self._sim = 0.0  # simulated time the state was last brought up to
        self._drift = scenario.drift
        self._next_event = 0
        start = scenario.clock or datetime.datetime.now().replace(microsecond=0)
        self._rtc_start = start
        self.flags = ConsoleFlags(asleep=scenario.asleep, debug=scenario.debug, garbage=scenario.garbage, drop=scenario.drop)
        self._units: Dict[int, UnitState] = {}
        for address in range(1, scenario.units + 1):
            self._units[address] = self._new_unit(address, scenario.settings_for(address))

    # ------------------------------------------------------------------ time

    @property
    def rtc_start(self) -> datetime.datetime:
        """The units' real-time clock when the bank started."""
        return self._rtc_start

    def now(self) -> float:
        """Simulated seconds since the bank started."""
        return (self._clock() - self._start) * self.scenario.speed + self._offset

    def advance(self, seconds: float) -> None:
        """Move simulated time forward (drift and timeline follow) without waiting."""
        with self._lock:
            self._offset += seconds
            self._catch_up()

    def set_drift(self, enabled: bool) -> None:
        with self._lock:
            self._catch_up()
            self._drift = enabled

    # --------------------------------------------------------------- reading

    @property
    def addresses(self) -> List[int]:
        """Every configured address, present or not."""
        return sorted(self._units)

    def present(self) -> List[int]:
        with self._lock:
            self._catch_up()
            return [a for a in sorted(self._units) if self._units[a].present]

    def snapshot(self, address: int) -> UnitSnapshot:
        """The unit as the console prints it now; a not-configured address is absent."""
        with self._lock:
            self._catch_up()
            return self._snapshot_of(address)

    def snapshots(self) -> List[UnitSnapshot]:
        """Every configured unit, all taken at the same simulated moment."""
        with self._lock:
            self._catch_up()
            return [self._snapshot_of(a) for a in sorted(self._units)]

    def console_flags(self) -> ConsoleFlags:
        """A copy of the console flags, timeline applied."""
        with self._lock:
            self._catch_up()
            f = self.flags
            return ConsoleFlags(f.asleep, f.debug, f.silent, f.garbage, f.drop, list(f.cut_after))

    # -------------------------------------------------------------- changing

    def update(self, target: Target = None, **changes: Any) -> None:
        """Apply unit settings (the scenario's unit keys) to ``target``: an address, a list, ``"all"`` or None (all).

        ``cell=N`` with ``cell_voltage=V`` sets one cell.  Raises ``ScenarioError`` on unknown keys or bad values.
        """
        problems: List[str] = []
        checked = check_unit_changes(changes, "update", problems, allow_cell=True)
        if problems:
            raise ScenarioError(problems, "Bank.update")
        with self._lock:
            self._catch_up()
            for address in self._targets(target):
                self._apply(self._units[address], checked)

    def set_absent(self, address: Target, absent: bool = True) -> None:
        self.update(address, absent=absent)

    def set_present(self, address: Target) -> None:
        self.update(address, absent=False)

    def set_all_absent(self, absent: bool = True) -> None:
        self.update("all", absent=absent)

    def set_cell_voltage(self, address: Target, cell: int, volts: float) -> None:
        self.update(address, cell=cell, cell_voltage=volts)

    def set_cell_voltages(self, address: Target, volts: Iterable[float]) -> None:
        self.update(address, cell_voltages=list(volts))

    def set_temperature(self, address: Target, celsius: float) -> None:
        """Every cell sensor, the BMS and (where fitted) the MOSFET sensor of the unit."""
        self.update(address, temperature=celsius)

    def set_cell_temperatures(self, address: Target, celsius: Iterable[float]) -> None:
        self.update(address, temperatures=list(celsius))

    def set_bms_temperature(self, address: Target, celsius: float) -> None:
        self.update(address, bms_temperature=celsius)

    def set_mos_temperature(self, address: Target, celsius: Optional[float]) -> None:
        self.update(address, mos_temperature=celsius)

    def set_current(self, address: Target, amps: float) -> None:
        """Current in A, + charging; Base.St follows the sign unless a state was set."""
        self.update(address, current=amps)

    def set_soc(self, address: Target, percent: float) -> None:
        self.update(address, soc=percent)

    def set_state(self, address: Target, state: str) -> None:
        """Base.St word (Charge, Dischg, Idle, SysError ...), or ``auto`` to follow the current."""
        self.update(address, state=state)

    def set_cell_state(self, address: Target, cell: int, state: str) -> None:
        """A cell's ``Volt. State`` (Normal, High, Low ...)."""
        with self._lock:
            self._catch_up()
            for a in self._targets(address):
                unit = self._units[a]
                if not 0 <= cell < unit.cells:
                    raise ScenarioError(["cell %d does not exist (%d cells)" % (cell, unit.cells)], "Bank")
                problems: List[str] = []
                states = dict(unit.cell_states)
                states[cell] = state
                checked = check_unit_changes({"cell_states": states}, "set_cell_state", problems)
                if problems:
                    raise ScenarioError(problems, "Bank")
                self._apply(unit, checked)

    def set_events(
        self, address: Target, bat: Optional[int] = None, power: Optional[int] = None, fault: Optional[int] = None
    ) -> None:
        """Event words of ``pwr N`` (None leaves one unchanged)."""
        changes = {k: v for k, v in (("bat_events", bat), ("power_events", power), ("system_fault", fault)) if v is not None}
        self.update(address, **changes)

    def set_silent(self, silent: bool = True) -> None:
        """The console stops (or resumes) answering anything, echo included."""
        with self._lock:
            self._catch_up()
            self.flags.silent = silent

    def set_asleep(self, asleep: bool = True) -> None:
        """Power the console off (silent until the 1200-baud wake-up frame, back in user mode) or on."""
        with self._lock:
            self._catch_up()
            self.flags.asleep = asleep
            if asleep:
                self.flags.debug = False

    def set_garbage(self, probability: float) -> None:
        """Each reply byte is replaced by a wrong one with this probability."""
        self._set_probability("garbage", probability)

    def set_drop(self, probability: float) -> None:
        """Each reply byte is lost with this probability."""
        self._set_probability("drop", probability)

    def cut_next_reply(self, after: int, replies: int = 1) -> None:
        """The next ``replies`` replies stop after ``after`` bytes (no completion, no prompt)."""
        with self._lock:
            self._catch_up()
            self.flags.cut_after.extend([after] * replies)

    def set_debug(self, debug: bool) -> None:
        with self._lock:
            self.flags.debug = debug

    def wake(self) -> None:
        """The wake-up frame arrived: the console answers again, in user mode."""
        with self._lock:
            self.flags.asleep = False
            self.flags.debug = False

    def take_cut(self) -> Optional[int]:
        """The byte limit for the reply being started, if one was asked for."""
        with self._lock:
            return self.flags.cut_after.pop(0) if self.flags.cut_after else None

    # ------------------------------------------------------------- internals

    def _set_probability(self, name: str, probability: float) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError("%s probability must be 0..1" % name)
        with self._lock:
            self._catch_up()
            setattr(self.flags, name, probability)

    def _targets(self, target: Target) -> List[int]:
        if target is None or target == "all":
            return sorted(self._units)
        targets = [target] if isinstance(target, int) else list(target)  # type: ignore[arg-type]
        for address in targets:
            if address not in self._units:
                raise ScenarioError(["unit %r is not in this bank (1..%d)" % (address, len(self._units))], "Bank")
        return targets

    def _new_unit(self, address: int, settings: Mapping[str, Any]) -> UnitState:
        fw = self.scenario.firmware
        cells = settings.get("cells", 15)
        unit = UnitState(
            address=address,
            model=fw.model,
            manufacturer=fw.manufacturer,
            board_version=fw.board_version,
            main_soft_version=fw.main_soft_version,
            soft_version=fw.soft_version,
            cells=cells,
            cell_volts=[DEFAULT_CELL_VOLTAGE] * cells,
            sensor_temps=[DEFAULT_TEMPERATURE] * (3 if cells == 15 else 4),
            bms_temp=DEFAULT_TEMPERATURE + 1.0,
            mos_temp=DEFAULT_TEMPERATURE + 0.5,
            barcode="PSIM%012d" % address,
            capacity=100.0 if cells == 16 else 50.0,
        )
        if "temperatures" in settings:
            # without its own value the BMS reads a little warmer than the warmest cell sensor
            unit.bms_temp = max(settings["temperatures"]) + 1.0
        self._apply(unit, settings)
        return unit

    def _apply(self, unit: UnitState, changes: Mapping[str, Any]) -> None:
        """Apply checked unit settings (see ``scenario.UNIT_KEYS``)."""
        changes = dict(changes)
        if "cells" in changes and changes["cells"] != unit.cells:
            unit.cells = changes.pop("cells")
            base = unit.cell_volts[0] if unit.cell_volts else DEFAULT_CELL_VOLTAGE
            unit.cell_volts = [base] * unit.cells
        else:
            changes.pop("cells", None)
        cell = changes.pop("cell", None)
        if "cell_voltage" in changes:
            volts = changes.pop("cell_voltage")
            if cell is not None:
                if cell >= unit.cells:
                    raise ScenarioError(["cell %d does not exist (%d cells)" % (cell, unit.cells)], "Bank")
                unit.cell_volts[cell] = volts
            else:
                offsets = list(changes.get("cell_offsets", ()))
                unit.cell_volts = [volts + (offsets[i] / 1000.0 if i < len(offsets) else 0.0) for i in range(unit.cells)]
        elif "cell_offsets" in changes:
            base = unit.cell_volts[0] if unit.cell_volts else DEFAULT_CELL_VOLTAGE
            offsets = list(changes["cell_offsets"])
            unit.cell_volts = [base + (offsets[i] / 1000.0 if i < len(offsets) else 0.0) for i in range(unit.cells)]
        changes.pop("cell_offsets", None)
        if "cell_voltages" in changes:
            volts_list = list(changes.pop("cell_voltages"))
            if len(volts_list) != unit.cells:
                raise ScenarioError(["%d cell voltages for %d cells" % (len(volts_list), unit.cells)], "Bank")
            unit.cell_volts = volts_list
        if "temperatures" in changes:
            unit.sensor_temps = list(changes.pop("temperatures"))
        if "temperature" in changes:
            celsius = changes.pop("temperature")
            unit.sensor_temps = [celsius] * len(unit.sensor_temps)
            unit.bms_temp = celsius
            if unit.mos_temp is not None:
                unit.mos_temp = celsius
        if "bms_temperature" in changes:
            unit.bms_temp = changes.pop("bms_temperature")
        if "mos_temperature" in changes:
            unit.mos_temp = changes.pop("mos_temperature")
        if "absent" in changes:
            unit.present = not changes.pop("absent")
        if "balancing" in changes:
            unit.balancing = set(changes.pop("balancing"))
        if "stats" in changes:
            stats = dict(unit.stats)
            for key, value in changes.pop("stats").items():
                stats[STAT_ALIASES.get(key, key)] = value
            unit.stats = stats
        for key in ("cell_states", "cell_temp_states"):
            if key in changes:
                setattr(unit, key, dict(changes.pop(key)))
        for key, value in changes.items():
            if key == "state":
                unit.state = value
            elif hasattr(unit, key):
                setattr(unit, key, value)
            else:  # a key UNIT_KEYS knows but the state does not: a programming error
                raise AssertionError("unit key %s not handled" % key)

    def _catch_up(self) -> None:
        """Bring drift and timeline up to the current simulated time."""
        now = self.now()
        timeline = self.scenario.timeline
        while self._next_event < len(timeline) and timeline[self._next_event].at <= now:
            event = timeline[self._next_event]
            self._integrate(event.at)
            self._next_event += 1
            logger.debug("timeline at %.1f s: units %s %s %s", event.at, event.units, dict(event.changes), dict(event.console))
            for address in event.units:
                self._apply(self._units[address], event.changes)
            self._apply_console(event.console)
        self._integrate(now)

    def _apply_console(self, changes: Mapping[str, Any]) -> None:
        for key, value in changes.items():
            if key not in CONSOLE_KEYS:
                continue
            if key == "cut_after":
                if value is not None:
                    self.flags.cut_after.append(value)
            elif key == "asleep":
                self.flags.asleep = value
                if value:
                    self.flags.debug = False
            else:
                setattr(self.flags, key, value)

    def _integrate(self, until: float) -> None:
        dt = until - self._sim
        if dt <= 0:
            return
        self._sim = until
        if not self._drift:
            return
        for unit in self._units.values():
            if not unit.present:
                continue
            unit.state_seconds += dt
            if unit.current == 0 or unit.capacity <= 0:
                continue
            soc = min(100.0, max(0.0, unit.soc + unit.current * dt / 3600.0 / unit.capacity * 100.0))
            moved = soc - unit.soc
            unit.soc = soc
            unit.cell_volts = [v + VOLTS_PER_PERCENT * moved for v in unit.cell_volts]

    def _snapshot_of(self, address: int) -> UnitSnapshot:
        unit = self._units.get(address)
        if unit is None or not unit.present:
            return UnitSnapshot(address=address, present=False)
        return self._snapshot(unit)

    def _rtc(self, unit: UnitState) -> str:
        elapsed = self._sim if self._drift else 0.0
        # slaves' clocks lag the master by a second or two, as in real tables
        moment = self._rtc_start + datetime.timedelta(seconds=int(elapsed) - (unit.address - 1) % 3)
        return moment.strftime("%Y-%m-%d %H:%M:%S")

    def _snapshot(self, unit: UnitState) -> UnitSnapshot:
        fw = self.scenario.firmware
        step = 1000 if fw.whole_degrees else 100

        def mc(celsius: float) -> int:
            return _round(celsius * 1000.0 / step) * step

        cells_mv = tuple(_round(v * 1000.0) for v in unit.cell_volts)
        sensors = tuple(mc(t) for t in unit.sensor_temps)
        groups = len(sensors)
        cell_temps = tuple(sensors[i * groups // unit.cells] for i in range(unit.cells))
        current_ma = _round(unit.current * 1000.0)
        if unit.state is not None:
            state = unit.state
        else:
            state = "Charge" if current_ma > 0 else "Dischg" if current_ma < 0 else "Idle"
        soc = _round(unit.soc)
        capacity_mah = _round(unit.capacity * 1000.0)
        stats = dict(unit.stats)
        stats.setdefault("Charge Times", unit.charge_times)
        return UnitSnapshot(
            address=unit.address,
            present=True,
            model=unit.model,
            manufacturer=unit.manufacturer,
            board_version=unit.board_version,
            main_soft_version=unit.main_soft_version,
            soft_version=unit.soft_version,
            barcode=unit.barcode,
            cells_mv=cells_mv,
            current_ma=current_ma,
            soc=soc,
            base_state=state,
            sensor_temps_mc=sensors,
            cell_temps_mc=cell_temps,
            bms_temp_mc=mc(unit.bms_temp),
            mos_temp_mc=None if unit.mos_temp is None else mc(unit.mos_temp),
            volt_state=unit.volt_state,
            curr_state=unit.curr_state,
            temp_state=unit.temp_state,
            bv_state=unit.bv_state,
            bt_state=unit.bt_state,
            mos_state=unit.mos_state,
            sys_alarm=unit.sys_alarm,
            coul_state=unit.coul_state or ("Full" if soc >= 100 else "Normal"),
            soh_state=unit.soh_state,
            cell_states=tuple(unit.cell_states.get(i, "Normal") for i in range(unit.cells)),
            cell_temp_states=tuple(unit.cell_temp_states.get(i, unit.temp_state) for i in range(unit.cells)),
            balancing=tuple(i in unit.balancing for i in range(unit.cells)),
            bat_events=unit.bat_events,
            power_events=unit.power_events,
            system_fault=unit.system_fault,
            capacity_mah=capacity_mah,
            remaining_mah=_round(capacity_mah * soc / 100.0),
            max_voltage_mv=_round(unit.max_voltage * 1000.0),
            max_charge_ma=_round(unit.max_charge_current * 1000.0),
            max_discharge_ma=_round(unit.max_discharge_current * 1000.0),
            heater=unit.heater,
            charge_times=unit.charge_times,
            state_seconds=int(unit.state_seconds),
            stats=tuple(sorted(stats.items())),
            rtc=self._rtc(unit),
        )
