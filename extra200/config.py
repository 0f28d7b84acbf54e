"""Configuration: one typed schema, loaded from ``config.yaml``.

Every section is a frozen dataclass whose fields are the keys, with their
defaults; ``_CHECKS`` adds ranges and choices.  ``load_config`` reports every
problem at once in a ``ConfigError`` naming the key (``serial.baud``) and what
is wrong with it, so a user fixes a broken file in one go.

The keys of the original extra200tomqtt (``mqtt.*``, ``serial.port``,
``serial.reading_freq``, ``battery.*``, ``logging.*``) keep their meaning.
"""

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from .validation import ValidationError

# The value of a key the program finds out by itself from the console (serial.baud, battery.num_cells, ...).
AUTO = "auto"
# Bauds battery consoles use, in the order ``serial.baud: auto`` tries them: the common ones first
# (115200: US2000/US3000/US5000/Force/Pytes; 19200: Extra2000).
CONSOLE_BAUDS: Tuple[int, ...] = (115200, 19200, 9600, 57600, 38400)


class ConfigError(ValidationError):
    """The configuration cannot be used; ``problems`` lists each key and what is wrong."""

    def __init__(self, problems: List[str], source: str = "config") -> None:
        super().__init__(problems, source)

    def __str__(self) -> str:
        return self.report()


@dataclass(frozen=True)
class TlsConfig:
    enabled: bool = False
    ca_file: str = ""  # empty = the system's CA store
    insecure: bool = False  # skip host-name verification (self-signed test brokers)


@dataclass(frozen=True)
class MqttConfig:
    active: bool = True
    broker: str = "localhost"
    port: int = 1883
    username: str = ""
    password: str = ""
    topic_base: str = "victron-battery-middleware"
    client_id: str = ""  # empty = "extra200tomqtt-<hostname>", stable across restarts
    keepalive: int = 30
    per_battery_topics: bool = True  # also publish <topic_base>/battery_<N>
    tls: TlsConfig = field(default_factory=TlsConfig)


@dataclass(frozen=True)
class SerialConfig:
    port: str = "/dev/ttyUSB0"
    reading_freq: float = 5.0  # seconds between polls
    baud: Union[int, str] = AUTO  # auto: found on the console (and remembered); or a number, used as it is
    wakeup: str = "auto"  # auto: only when a line end gets no prompt; always; never
    login_debug: Union[bool, str] = AUTO  # auto: only when the console refuses data commands in user mode
    command_timeout: float = 5.0  # seconds a reply may take before it is dropped
    cells_interval: float = 60.0  # seconds between reading every unit's "bat N"
    info_interval: float = 3600.0  # seconds between "info N" / "stat N" reads
    stale_after: float = 30.0  # seconds without a good poll before data counts as stale


@dataclass(frozen=True)
class BatteryConfig:
    addresses: Tuple[int, ...] = ()  # empty = every unit the pwr table shows present
    num_cells: Union[int, str] = AUTO  # auto: each unit's own count from the console; 15 or 16 can only lower limits
    max_charge_voltage: Union[float, str] = AUTO  # V, pack; auto: the ceiling for the detected cell count
    max_charge_current: float = 25.0  # A per battery; the bank gets this x units online
    max_discharge_current: float = 25.0  # A per battery

    @property
    def cells(self) -> Optional[int]:
        """``num_cells`` when the user set it; None for ``auto`` (each unit's count comes from the console)."""
        return None if self.num_cells == AUTO else int(self.num_cells)

    @property
    def charge_voltage_cap(self) -> Optional[float]:
        """``max_charge_voltage`` when the user set it; None for ``auto`` (the ceiling of the cell count)."""
        return None if self.max_charge_voltage == AUTO else float(self.max_charge_voltage)


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    file_path: str = ""  # empty = standard error only; EXTRA200_LOG_FILE overrides
    file_max_size_kb: int = 1000
    file_max_files: int = 5


@dataclass(frozen=True)
class ChargeConfig:
    """Charge-control rules (the charge package); the README section "Charge control" explains each.

    Voltages are per cell (the pack value is that x ``battery.num_cells``).
    A curve is text, ``"x:percent, x:percent, ..."`` with x rising, read as
    straight lines between the points and flat beyond the ends; the percent
    is of the bank's maximum current.
    """

    enabled: bool = True
    # Charge voltage limit (CVL)
    bulk_cell_voltage: float = 3.45  # bulk/absorption target: 51.75 V (15 cells), 55.20 V (16)
    float_cell_voltage: float = 3.375  # after a full charge: 50.62 V / 54.00 V
    max_cell_voltage: float = 3.52  # CVL is lowered so the highest cell stays at or below this
    max_cell_voltage_margin: float = 0.010  # V: CVL rises again only once that cell is this far below
    absorption_time: float = 1800.0  # s at target with balanced cells before float
    absorption_max_time: float = 10800.0  # s at target before float whatever the spread (0: no limit)
    balanced_cell_spread: float = 0.020  # V, highest - lowest cell, counted as balanced
    target_cell_margin: float = 0.010  # V/cell: the pack counts as at target this close below CVL
    absorption_cancel_cell_drop: float = 0.030  # V/cell below CVL: absorption ends, back to bulk
    rebulk_soc: float = 80.0  # %: float -> bulk below this SoC
    rebulk_cell_spread: float = 0.080  # V: float -> bulk when the cell spread reaches this
    cvl_recovery_hold: float = 60.0  # s after a CVL reduction before it may rise
    cvl_recovery_rate: float = 0.002  # V/s (pack) at which CVL rises
    full_charge_days: float = 14.0  # a full charge (BMS reports full) at least this often; 0: off
    full_charge_cell_voltage: float = 3.50  # CVL target while a full charge is due (cells still held at max_cell_voltage)
    # Current limits (CCL, DCL)
    charge_cutoff_cell_voltage: float = 3.55  # CCL 0 while any cell is at or above
    discharge_cutoff_cell_voltage: float = 2.90  # DCL 0 while any cell is at or below; x cells = BatteryLowVoltage
    charge_cell_voltage_curve: str = "3.40:100, 3.45:25, 3.50:5, 3.55:0"  # highest cell V
    discharge_cell_voltage_curve: str = "2.90:0, 3.00:10, 3.10:50, 3.15:100"  # lowest cell V
    charge_min_temperature: float = 0.0  # °C, cells: CCL 0 below
    charge_max_temperature: float = 45.0  # °C, cells: CCL 0 above
    charge_temperature_curve: str = "0:0, 5:20, 10:100, 40:100, 45:20"  # coldest and hottest cell °C
    discharge_min_temperature: float = -10.0  # °C, cells: DCL 0 below
    discharge_max_temperature: float = 50.0  # °C, cells: DCL 0 above
    discharge_temperature_curve: str = "-10:0, -5:20, 0:50, 5:100, 45:100, 50:20"
    electronics_temperature_curve: str = "70:100, 80:25, 90:0"  # hottest BMS / MOSFET °C, CCL and DCL
    soc_derating: bool = False  # also derate by SoC (the two curves below)
    charge_soc_curve: str = "85:100, 90:50, 95:20, 98:10"  # fullest unit's SoC %
    discharge_soc_curve: str = "5:10, 10:20, 15:50, 20:100"  # emptiest unit's SoC %
    bms_states_block: bool = True  # a unit's High/Low/abnormal state words and protection events stop charge (or discharge)
    empty_charge_percent: float = 10.0  # % of the maximum a unit at its low cut-off may charge with despite SysError
    current_recovery_hold: float = 30.0  # s after a CCL/DCL reduction before it may rise
    current_recovery_rate: float = 0.5  # A/s per battery online at which CCL/DCL rise
    stale_charge_grace: float = 0.0  # s CCL is held without data (only if the last highest cell was in full-current range)
    stale_discharge_grace: float = 600.0  # s DCL is held without data (only if the last lowest cell was in full-current range)
    # Alarms
    low_soc_warning: float = 10.0  # %
    low_soc_alarm: float = 5.0  # %
    imbalance_warning: float = 0.100  # V cell spread
    imbalance_alarm: float = 0.200  # V

    @staticmethod
    def parse_curve(text: str) -> Tuple[Tuple[float, float], ...]:
        """``"3.40:100, 3.45:25"`` -> ((3.40, 100.0), (3.45, 25.0)); ValueError says what is wrong."""
        points: List[Tuple[float, float]] = []
        for part in text.split(","):
            x_text, sep, pct_text = part.strip().rpartition(":")
            try:
                if not sep:
                    raise ValueError
                x, pct = float(x_text), float(pct_text)
            except ValueError:
                raise ValueError("%r is not a point like 3.45:25 (value:percent)" % part.strip()) from None
            if not 0.0 <= pct <= 100.0:
                raise ValueError("percent must be 0 to 100, got %s in %r" % (pct_text, part.strip()))
            if points and x <= points[-1][0]:
                raise ValueError("values must rise from point to point, got %s after %s" % (x_text, points[-1][0]))
            points.append((x, pct))
        if len(points) < 2:
            raise ValueError('needs at least two points, like "3.40:100, 3.55:0"')
        return tuple(points)

    @staticmethod
    def curve_problem(text: str) -> Optional[str]:
        try:
            ChargeConfig.parse_curve(text)
        except ValueError as exc:
            return str(exc)
        return None

    @staticmethod
    def shaped_curve(shape: str) -> Callable[[str], Optional[str]]:
        """A check for a derating curve that must have ``shape``: "falling" (less current as x rises),
        "rising", or "window" (rising to a plateau, then falling), so no reading earns more current
        by getting worse."""

        def check(text: str) -> Optional[str]:
            problem = ChargeConfig.curve_problem(text)
            if problem is not None:
                return problem
            percents = [pct for _, pct in ChargeConfig.parse_curve(text)]
            steps = [b - a for a, b in zip(percents, percents[1:])]
            if shape == "falling":
                bad = any(step > 0 for step in steps)
            elif shape == "rising":
                bad = any(step < 0 for step in steps)
            else:  # once falling, never rising again
                bad = any(later > 0 for i, step in enumerate(steps) if step < 0 for later in steps[i + 1 :])
            if bad:
                return "percent must %s from point to point, got %r" % (
                    {
                        "falling": "fall or stay",
                        "rising": "rise or stay",
                        "window": "rise, then fall (never rise again after falling)",
                    }[shape],
                    text,
                )
            return None

        return check


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (homeassistant/)."""

    enabled: bool = True  # publish state and availability for Home Assistant
    discovery: bool = True  # announce the entities; false = states only, for homeassistant/pylon-batteries.yaml
    discovery_prefix: str = "homeassistant"
    status_topic: str = ""  # Home Assistant's birth / will topic; empty = <discovery_prefix>/status
    # starts every device id, unique id and entity id; [a-z0-9_]; change = new entities; empty = automatic
    # (the one used before, else from the master's barcode: pylontech_210001)
    bank_id: str = ""
    bank_name: str = ""  # the bank device's name in Home Assistant; empty = automatic (Pylontech 210001)
    expire_after: int = 0  # seconds without a state before values show unavailable; 0 = 3 x reading_freq, >= 30
    remove_after: float = 86400.0  # seconds an absent unit keeps its entities (only when battery.addresses is empty)


@dataclass(frozen=True)
class DatabaseTlsConfig:
    enabled: bool = False
    ca_file: str = ""  # empty = the system's CA store
    cert_file: str = ""  # client certificate (only when the server asks for one)
    key_file: str = ""
    insecure: bool = False  # skip certificate and host-name checks (self-signed test servers)


@dataclass(frozen=True)
class DatabaseConfig:
    """Optional MariaDB / MySQL recording (database/)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 3306
    user: str = "extra200"
    password: str = ""
    database: str = "extra200tomqtt"
    tls: DatabaseTlsConfig = field(default_factory=DatabaseTlsConfig)
    connect_timeout: float = 10.0  # seconds
    timeout: float = 30.0  # seconds one read or write may take before the connection counts as lost
    cells: bool = True  # cell rows (columns by cells.level) whenever a fresh "bat N" was read
    events: bool = True  # event changes (events.py)
    spool_dir: str = ""  # rows waiting for the database; empty = <state_dir>/database-spool
    spool_max_mb: float = 100.0  # when full, the oldest waiting rows are dropped (logged)


@dataclass(frozen=True)
class StatusFileConfig:
    """Optional JSON status file (statusfile.py), rewritten atomically every poll."""

    enabled: bool = False
    path: str = "/run/extra200tomqtt/status.json"


@dataclass(frozen=True)
class EventsConfig:
    """Events log with cell detail (events.py)."""

    enabled: bool = True
    level: str = "warning"  # info / warning: the lowest level written to the events log
    log_path: str = ""  # empty = battery_events.log beside the main log (else in state_dir)
    max_size_kb: int = 1000  # the events log rotates at this size ...
    max_files: int = 5  # ... keeping this many old files
    cell_snapshots: bool = True  # with each logged change, the unit's cells as a table
    catalogue_file: str = ""  # YAML/JSON file adding to or overriding event names and levels


@dataclass(frozen=True)
class CellsConfig:
    """How much per-cell data the outputs carry (JSON file, database, Home Assistant entities).

    off: none; low: cell voltages; medium: voltages, temperatures, states and
    per-battery min/max/delta statistics; high: every column of ``bat N``.
    """

    level: str = "low"


@dataclass(frozen=True)
class Config:
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    serial: SerialConfig = field(default_factory=SerialConfig)
    battery: BatteryConfig = field(default_factory=BatteryConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    charge: ChargeConfig = field(default_factory=ChargeConfig)
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    status_file: StatusFileConfig = field(default_factory=StatusFileConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    cells: CellsConfig = field(default_factory=CellsConfig)
    state_dir: str = "/var/lib/extra200tomqtt"  # persistent data (energy counters, spools)
    state_save_interval: float = 60.0  # seconds between writes of the energy counters (SD-card wear vs. a power cut)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or "extra200tomqtt-%s" % socket.gethostname()


# Range and choice checks, by dotted key.  Types come from the dataclass fields.
def _between(low: float, high: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if not low <= value <= high:
            return "must be between %s and %s, got %s" % (low, high, value)
        return None

    return check


def _one_of(*choices: Any) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        if value not in choices:
            return "must be one of %s, got %r" % (", ".join(repr(c) for c in choices), value)
        return None

    return check


def _auto_or(check: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    """``check``, for a key that may also be ``auto``."""

    def checked(value: Any) -> Optional[str]:
        if value == AUTO:
            return None
        problem = check(value)
        return problem + ", or auto" if problem else None

    return checked


def _addresses(value: Tuple[int, ...]) -> Optional[str]:
    if any(not 1 <= a <= 16 for a in value):
        return "addresses must be unit numbers 1 to 16, got %s" % list(value)
    if len(set(value)) != len(value):
        return "lists an address twice: %s" % list(value)
    return None


def _topic(optional: bool) -> Callable[[Any], Optional[str]]:
    """An MQTT topic used literally: no wildcards, no empty first or last level (or empty, when optional)."""

    def check(value: str) -> Optional[str]:
        if optional and not value:
            return None
        if not value or "+" in value or "#" in value or value.startswith("/") or value.endswith("/"):
            return "must be an MQTT topic without wildcards or leading / trailing /, got %r" % value
        return None

    return check


def _identifier(value: str) -> Optional[str]:
    if not value or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789_" for c in value):
        return "must be lower-case letters, digits and _ only, got %r" % value
    return None


_CHECKS: Dict[str, Callable[[Any], Optional[str]]] = {
    "mqtt.port": _between(1, 65535),
    "mqtt.keepalive": _between(5, 3600),
    "serial.reading_freq": _between(0.5, 3600),
    "serial.baud": _auto_or(_one_of(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)),
    "serial.wakeup": _one_of("auto", "always", "never"),
    "serial.command_timeout": _between(0.5, 120),
    "serial.cells_interval": _between(0, 86400),
    "serial.info_interval": _between(0, 7 * 86400),
    "serial.stale_after": _between(1, 3600),
    "battery.addresses": _addresses,
    "battery.num_cells": _auto_or(_one_of(15, 16)),
    "battery.max_charge_voltage": _auto_or(_between(40.0, 58.4)),
    "battery.max_charge_current": _between(0, 500),
    "battery.max_discharge_current": _between(0, 500),
    "charge.bulk_cell_voltage": _between(3.30, 3.60),
    "charge.float_cell_voltage": _between(3.20, 3.45),
    "charge.max_cell_voltage": _between(3.40, 3.65),
    "charge.max_cell_voltage_margin": _between(0.0, 0.1),
    "charge.absorption_time": _between(0, 86400),
    "charge.balanced_cell_spread": _between(0.001, 0.2),
    "charge.target_cell_margin": _between(0.0, 0.05),
    "charge.absorption_cancel_cell_drop": _between(0.005, 0.2),
    "charge.rebulk_soc": _between(0, 100),
    "charge.rebulk_cell_spread": _between(0.01, 1.0),
    "charge.cvl_recovery_hold": _between(0, 3600),
    "charge.cvl_recovery_rate": _between(0.0001, 1.0),
    "charge.charge_cutoff_cell_voltage": _between(3.40, 3.65),
    "charge.discharge_cutoff_cell_voltage": _between(2.50, 3.20),
    "charge.charge_cell_voltage_curve": ChargeConfig.shaped_curve("falling"),
    "charge.discharge_cell_voltage_curve": ChargeConfig.shaped_curve("rising"),
    "charge.charge_min_temperature": _between(-20, 20),
    "charge.charge_max_temperature": _between(20, 60),
    "charge.charge_temperature_curve": ChargeConfig.shaped_curve("window"),
    "charge.discharge_min_temperature": _between(-30, 10),
    "charge.discharge_max_temperature": _between(30, 70),
    "charge.discharge_temperature_curve": ChargeConfig.shaped_curve("window"),
    "charge.electronics_temperature_curve": ChargeConfig.shaped_curve("falling"),
    "charge.charge_soc_curve": ChargeConfig.shaped_curve("falling"),
    "charge.discharge_soc_curve": ChargeConfig.shaped_curve("rising"),
    "charge.absorption_max_time": _between(0, 7 * 86400),
    "charge.full_charge_days": _between(0, 365),
    "charge.full_charge_cell_voltage": _between(3.40, 3.60),
    "charge.empty_charge_percent": _between(0, 100),
    "charge.current_recovery_hold": _between(0, 3600),
    "charge.current_recovery_rate": _between(0.01, 100),
    "charge.stale_charge_grace": _between(0, 300),
    "charge.stale_discharge_grace": _between(0, 86400),
    "charge.low_soc_warning": _between(0, 100),
    "charge.low_soc_alarm": _between(0, 100),
    "charge.imbalance_warning": _between(0.01, 1.0),
    "charge.imbalance_alarm": _between(0.01, 1.0),
    "logging.level": _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "logging.file_max_size_kb": _between(10, 1024 * 1024),
    "logging.file_max_files": _between(1, 100),
    "state_save_interval": _between(1, 3600),
    "database.port": _between(1, 65535),
    "database.connect_timeout": _between(1, 300),
    "database.timeout": _between(1, 3600),
    "database.spool_max_mb": _between(1, 100000),
    "status_file.path": lambda v: None if v.strip() else "must name a file",
    "events.level": _one_of("info", "warning"),
    "events.max_size_kb": _between(10, 1024 * 1024),
    "events.max_files": _between(1, 100),
    "cells.level": _one_of("off", "low", "medium", "high"),
    "homeassistant.discovery_prefix": _topic(optional=False),
    "homeassistant.status_topic": _topic(optional=True),
    "homeassistant.bank_id": lambda v: None if v == "" else _identifier(v),
    "homeassistant.expire_after": _between(0, 86400),
    "homeassistant.remove_after": _between(60, 365 * 86400),
}


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(tp, str(tp))


# Keys that take ``auto`` or a value of one type: (field type, the type of the value).
_AUTO_OR = {Union[int, str]: int, Union[float, str]: float, Union[bool, str]: bool}


def _coerce(key: str, tp: Any, value: Any, problems: List[str]) -> Any:
    """Convert a YAML value to the field's type, or record why it cannot be."""
    if tp in _AUTO_OR:
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        inner = _AUTO_OR[tp]
        converted = _coerce(key, inner, value, [])
        if converted is None:
            problems.append("%s: must be auto or %s, got %r" % (key, _type_name(inner), value))
        return converted
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if value is None:
            return ""
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif tp == Tuple[int, ...]:
        if value is None:
            return ()
        if isinstance(value, int) and not isinstance(value, bool):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        problems.append("%s: must be a list of whole numbers, got %r" % (key, value))
        return None
    problems.append("%s: must be %s, got %r" % (key, _type_name(tp), value))
    return None


def _build(cls: Any, data: Any, prefix: str, problems: List[str]) -> Any:
    """Build dataclass ``cls`` from mapping ``data``, collecting problems."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        problems.append("%s: must be a section of keys, got %r" % (prefix or "config", data))
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = _resolved_types(cls)
    values: Dict[str, Any] = {}
    for name, value in data.items():
        key = "%s.%s" % (prefix, name) if prefix else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields))
            problems.append("%s: unknown key (known keys here: %s)" % (key, known))
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, value, key, problems)
            continue
        before = len(problems)
        converted = _coerce(key, tp, value, problems)
        if len(problems) > before:
            continue
        check = _CHECKS.get(key)
        message = check(converted) if check else None
        if message:
            problems.append("%s: %s" % (key, message))
            continue
        values[name] = converted
    return cls(**values)


def _resolved_types(cls: Any) -> Dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def _relations(config: Config) -> List[str]:
    """Problems no single key shows: empty required texts, and keys that contradict each other."""
    problems: List[str] = []
    if not config.mqtt.broker.strip():
        problems.append("mqtt.broker: must name the broker's host (it is empty)")
    if any(c in config.mqtt.topic_base for c in "#+") or not config.mqtt.topic_base.strip("/ "):
        problems.append("mqtt.topic_base: must be a plain topic without the wildcards # and +, got %r" % config.mqtt.topic_base)
    if config.mqtt.tls.enabled and config.mqtt.tls.ca_file and not os.path.isfile(config.mqtt.tls.ca_file):
        problems.append("mqtt.tls.ca_file: no such file: %s" % config.mqtt.tls.ca_file)
    if not config.serial.port.strip():
        problems.append("serial.port: must name the serial port (it is empty)")
    elif config.serial.port.strip().lower().startswith("pylonsim:"):
        # A simulator left in a file would publish invented values to a real GX: only --port may choose it.
        problems.append(
            "serial.port: %r is the built-in simulator, which only the command line may select "
            "(--port pylonsim://); name the battery's real port here" % config.serial.port
        )
    if not config.state_dir.strip():
        problems.append("state_dir: must name a directory for persistent data (it is empty)")
    if config.serial.stale_after < config.serial.reading_freq:
        problems.append(
            "serial.stale_after: %s s is shorter than serial.reading_freq %s s: the data would count "
            "as stale between any two polls" % (config.serial.stale_after, config.serial.reading_freq)
        )
    if config.charge.float_cell_voltage > config.charge.bulk_cell_voltage:
        problems.append(
            "charge.float_cell_voltage: %.3f V is above charge.bulk_cell_voltage %.3f V"
            % (config.charge.float_cell_voltage, config.charge.bulk_cell_voltage)
        )
    if config.charge.low_soc_alarm > config.charge.low_soc_warning:
        problems.append(
            "charge.low_soc_alarm: %s %% is above charge.low_soc_warning %s %%"
            % (config.charge.low_soc_alarm, config.charge.low_soc_warning)
        )
    return problems


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate an already-loaded YAML document; raise ``ConfigError`` listing every problem."""
    problems: List[str] = []
    config = _build(Config, data, "", problems)
    if not problems:
        problems = _relations(config)
    if problems:
        raise ConfigError(problems, source)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice (PyYAML would silently keep the last one)."""

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: Dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    "the key %r is written twice (lines %d and %d)" % (key, seen[key], key_node.start_mark.line + 1),
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_config(path: Optional[str]) -> Config:
    """Load ``path`` (or the defaults when None); raise ``ConfigError`` on any problem."""
    if path is None:
        return Config()
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except OSError as exc:
        raise ConfigError(["cannot read the file: %s" % exc.strerror], path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
        raise ConfigError(["not valid YAML%s: %s" % (where, getattr(exc, "problem", exc))], path) from None
    return parse_config(data, path)


def replace(config: Config, section: str, **changes: Any) -> Config:
    """A copy of ``config`` with keys of one section changed (command-line overrides)."""
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


def redacted(config: Config) -> Dict[str, Any]:
    """The configuration as a dict with secrets hidden, for logs and status output."""
    data = dataclasses.asdict(config)
    if data["mqtt"]["password"]:
        data["mqtt"]["password"] = "***"
    for section in data.values():
        if isinstance(section, dict) and section.get("password"):
            section["password"] = "***"
    return data


def env_override(name: str) -> Optional[str]:
    value = os.environ.get(name)
    return value if value else None
