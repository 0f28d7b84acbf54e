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
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import yaml


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists each key and what is wrong."""

    def __init__(self, problems: List[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__("%s: %s" % (source, "; ".join(problems)))

    def __str__(self) -> str:
        lines = ["%s has %d problem%s:" % (self.source, len(self.problems), "" if len(self.problems) == 1 else "s")]
        lines.extend("  - " + p for p in self.problems)
        return "\n".join(lines)


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
    baud: int = 115200  # 115200 for US/Force/Pytes, 19200 for Extra2000
    wakeup: str = "auto"  # auto: only when a line end gets no prompt; always; never
    login_debug: bool = False  # send "login debug" after waking (Extra2000)
    command_timeout: float = 5.0  # seconds a reply may take before it is dropped
    cells_interval: float = 60.0  # seconds between reading every unit's "bat N"
    info_interval: float = 3600.0  # seconds between "info N" / "stat N" reads
    stale_after: float = 30.0  # seconds without a good poll before data counts as stale


@dataclass(frozen=True)
class BatteryConfig:
    addresses: Tuple[int, ...] = ()  # empty = every unit the pwr table shows present
    num_cells: int = 15  # 15 (48 V Pylontech) or 16 (51.2 V Pytes)
    max_charge_voltage: float = 52.5  # V, pack; never exceeded
    max_charge_current: float = 25.0  # A per battery; the bank gets this x units online
    max_discharge_current: float = 25.0  # A per battery


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "INFO"
    file_path: str = ""  # empty = standard error only; EXTRA200_LOG_FILE overrides
    file_max_size_kb: int = 1000
    file_max_files: int = 5


@dataclass(frozen=True)
class ChargeConfig:
    """Charge-control rules (charge_limits.py)."""

    enabled: bool = True


@dataclass(frozen=True)
class HomeAssistantConfig:
    """Home Assistant MQTT discovery (homeassistant.py)."""

    enabled: bool = True
    discovery_prefix: str = "homeassistant"


@dataclass(frozen=True)
class DatabaseConfig:
    """Optional MariaDB / MySQL recording (database.py)."""

    enabled: bool = False
    host: str = "localhost"
    port: int = 3306
    user: str = "extra200"
    password: str = ""
    database: str = "extra200tomqtt"


@dataclass(frozen=True)
class StatusFileConfig:
    """Optional JSON status file (statusfile.py)."""

    enabled: bool = False
    path: str = "/run/extra200tomqtt/status.json"


@dataclass(frozen=True)
class EventsConfig:
    """Events log with cell detail (events.py)."""

    enabled: bool = True
    level: str = "warning"  # info / warning: the lowest level written to the events log


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


def _addresses(value: Tuple[int, ...]) -> Optional[str]:
    if any(not 1 <= a <= 16 for a in value):
        return "addresses must be unit numbers 1 to 16, got %s" % list(value)
    if len(set(value)) != len(value):
        return "lists an address twice: %s" % list(value)
    return None


_CHECKS: Dict[str, Callable[[Any], Optional[str]]] = {
    "mqtt.port": _between(1, 65535),
    "mqtt.keepalive": _between(5, 3600),
    "serial.reading_freq": _between(0.5, 3600),
    "serial.baud": _one_of(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200),
    "serial.wakeup": _one_of("auto", "always", "never"),
    "serial.command_timeout": _between(0.5, 120),
    "serial.cells_interval": _between(0, 86400),
    "serial.info_interval": _between(0, 7 * 86400),
    "serial.stale_after": _between(1, 3600),
    "battery.addresses": _addresses,
    "battery.num_cells": _one_of(15, 16),
    "battery.max_charge_voltage": _between(40.0, 58.4),
    "battery.max_charge_current": _between(0, 500),
    "battery.max_discharge_current": _between(0, 500),
    "logging.level": _one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    "logging.file_max_size_kb": _between(10, 1024 * 1024),
    "logging.file_max_files": _between(1, 100),
    "database.port": _between(1, 65535),
    "events.level": _one_of("info", "warning"),
    "cells.level": _one_of("off", "low", "medium", "high"),
}


def _type_name(tp: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text"}.get(tp, str(tp))


def _coerce(key: str, tp: Any, value: Any, problems: List[str]) -> Any:
    """Convert a YAML value to the field's type, or record why it cannot be."""
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


def parse_config(data: Any, source: str = "config") -> Config:
    """Validate an already-loaded YAML document; raise ``ConfigError`` listing every problem."""
    problems: List[str] = []
    config = _build(Config, data, "", problems)
    if problems:
        raise ConfigError(problems, source)
    return config


def load_config(path: Optional[str]) -> Config:
    """Load ``path`` (or the defaults when None); raise ``ConfigError`` on any problem."""
    if path is None:
        return Config()
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
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
