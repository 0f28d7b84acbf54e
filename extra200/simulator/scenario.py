"""Scenario files of the simulator: a YAML description of a battery bank and its console.

``load_scenario`` turns a shipped scenario name, a YAML path or a mapping into
a checked, immutable ``Scenario``; every problem is reported at once in a
``ScenarioError``.  The format is documented in the comment block at the top
of ``scenarios/us2000c-3.yaml``.

Unit settings (``defaults``, ``unit: {N: ...}``, timeline events and the
runtime ``Bank.update`` call) share one checker, ``check_unit_changes``, so a
key means the same thing everywhere.
"""

import dataclasses
import datetime
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import yaml

from ..validation import ValidationError
from .firmware import Firmware, build_firmware

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
DEFAULT_SCENARIO = "us2000c-3"
MAX_UNITS = 16
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


class _LineMapping(dict):
    """A mapping read from a scenario file, with the line it starts on (1-based)."""

    line: Optional[int] = None


class _LineLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that keeps each mapping's line, so a problem can name it."""


def _construct_line_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineMapping:
    mapping = _LineMapping(loader.construct_mapping(node, deep=True))
    mapping.line = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_line_mapping)


def _at_line(where: str, data: Any) -> str:
    """``timeline[3]`` -> ``timeline[3] (line 31)`` when the data came from a file."""
    line = getattr(data, "line", None)
    return "%s (line %d)" % (where, line) if line else where


class ScenarioError(ValidationError):
    """A scenario cannot be used; ``problems`` names each key and what is wrong with it."""

    def __init__(self, problems: List[str], source: str = "scenario") -> None:
        super().__init__(problems, source)


# ---------------------------------------------------------------- value checks


def _number(low: Optional[float] = None, high: Optional[float] = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("expected a number")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ValueError("expected a number between %s and %s" % (low, high))
        return float(value)

    return check


def _whole(low: int = 0, high: Optional[int] = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected a whole number")
        if value < low or (high is not None and value > high):
            raise ValueError("expected a whole number between %d and %s" % (low, high))
        return value

    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _word(value: Any) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise ValueError("expected a word")
    text = str(value).strip()
    if any(c.isspace() for c in text):
        raise ValueError("expected a single word without spaces")
    return text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError("expected text")
    return str(value)


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(value: Any) -> Any:
        return None if value is None else check(value)

    return wrapped


def _list_of(check: Callable[[Any], Any], min_len: int = 1, max_len: int = 16) -> Callable[[Any], Tuple[Any, ...]]:
    def wrapped(value: Any) -> Tuple[Any, ...]:
        if not isinstance(value, (list, tuple)):
            raise ValueError("expected a list")
        if not min_len <= len(value) <= max_len:
            raise ValueError("expected %d to %d items" % (min_len, max_len))
        return tuple(check(v) for v in value)

    return wrapped


def _index_map(check: Callable[[Any], Any]) -> Callable[[Any], Dict[int, Any]]:
    def wrapped(value: Any) -> Dict[int, Any]:
        if not isinstance(value, Mapping):
            raise ValueError("expected a mapping of cell index to value")
        out = {}
        for key, item in value.items():
            index = _whole(0, 15)(key)
            out[index] = check(item)
        return out

    return wrapped


def _stats(value: Any) -> Dict[str, int]:
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of stat label to a whole number")
    return {str(k): _whole(0)(v) for k, v in value.items()}


def _state(value: Any) -> Optional[str]:
    text = _word(value)
    return None if text.lower() == "auto" else text


# Every key a unit accepts, with its check.  Units: V, A, degC, Ah, %, s.
UNIT_KEYS: Mapping[str, Callable[[Any], Any]] = {
    "absent": _flag,
    "model": _word,
    "manufacturer": _word,
    "board_version": _text,
    "main_soft_version": _word,
    "soft_version": _word,
    "cells": _whole(15, 16),
    "capacity": _number(1, 1000),
    "current": _number(-500, 500),
    "state": _state,
    "soc": _number(0, 100),
    "cell_voltage": _number(2.0, 4.5),
    "cell_offsets": _list_of(_number(-1000, 1000)),  # mV
    "cell_voltages": _list_of(_number(2.0, 4.5), 15, 16),
    "temperatures": _list_of(_number(-40, 100)),
    "temperature": _number(-40, 100),  # shorthand: every cell sensor, the BMS and the MOSFET
    "bms_temperature": _number(-40, 100),
    "mos_temperature": _optional(_number(-40, 120)),
    "barcode": _word,
    "volt_state": _word,
    "curr_state": _word,
    "temp_state": _word,
    "bv_state": _word,
    "bt_state": _word,
    "mos_state": _word,
    "sys_alarm": _word,
    "coul_state": _optional(_word),
    "soh_state": _word,
    "cell_states": _index_map(_word),
    "cell_temp_states": _index_map(_word),
    "balancing": _list_of(_whole(0, 15), 0),
    "bat_events": _whole(0, 0xFFFFFFFF),
    "power_events": _whole(0, 0xFFFFFFFF),
    "system_fault": _whole(0, 0xFFFFFFFF),
    "max_voltage": _number(40, 70),
    "max_charge_current": _number(0, 500),
    "max_discharge_current": _number(0, 500),
    "heater": _flag,
    "charge_times": _whole(0),
    "state_seconds": _whole(0),
    "stats": _stats,
}

# Keys a timeline event or Bank.update may use besides the unit keys.
CELL_KEY = "cell"  # with cell_voltage: set one cell instead of all of them

# Keys naming cells.  A scenario counts cells from 1, as the daemon names them (``B2C15`` is
# cell 15 of unit 2); the console and ``Bank``'s Python API count from 0.
CELL_NUMBER_KEYS = ("cell", "cell_states", "cell_temp_states", "balancing")


def _cell_numbers_to_indices(data: Mapping[str, Any], where: str, problems: List[str]) -> Dict[str, Any]:
    """A scenario's unit settings with cell numbers (1..16) turned into console indices (0..15)."""
    out = dict(data)

    def index(number: Any, key: str) -> Any:
        if isinstance(number, bool) or not isinstance(number, int):
            return number  # the checker reports it
        if not 1 <= number <= 16:
            problems.append("%s.%s: cell %r does not exist (cells count from 1, as in B1C1)" % (where, key, number))
            return None
        return number - 1

    for key in CELL_NUMBER_KEYS:
        if key not in out:
            continue
        value = out[key]
        if key == "cell":
            out[key] = index(value, key)
        elif isinstance(value, Mapping):
            out[key] = {index(k, key): v for k, v in value.items()}
        elif isinstance(value, (list, tuple)):
            out[key] = [index(v, key) for v in value]
        if (
            out[key] is None
            or (isinstance(out[key], dict) and None in out[key])
            or (isinstance(out[key], list) and None in out[key])
        ):
            del out[key]  # already reported
    return out


CONSOLE_KEYS: Mapping[str, Callable[[Any], Any]] = {
    "silent": _flag,
    "asleep": _flag,
    "garbage": _number(0, 1),
    "drop": _number(0, 1),
    "cut_after": _optional(_whole(0)),
}


def check_unit_changes(data: Mapping[str, Any], where: str, problems: List[str], allow_cell: bool = False) -> Dict[str, Any]:
    """Checked copy of unit settings; unknown keys and bad values go to ``problems``."""
    out: Dict[str, Any] = {}
    for key, value in data.items():
        key = str(key)
        if allow_cell and key == CELL_KEY:
            try:
                out[key] = _whole(0, 15)(value)
            except ValueError as exc:
                problems.append("%s.%s: %s" % (where, key, exc))
            continue
        check = UNIT_KEYS.get(key)
        if check is None:
            problems.append("%s.%s: unknown key" % (where, key))
            continue
        try:
            out[key] = check(value)
        except ValueError as exc:
            problems.append("%s.%s: %s" % (where, key, exc))
    return out


@dataclass(frozen=True)
class TimelineEvent:
    """One timed change: at ``at`` simulated seconds, apply ``changes`` to ``units`` and ``console``."""

    at: float
    units: Tuple[int, ...]  # empty = no unit change
    changes: Mapping[str, Any]
    console: Mapping[str, Any]
    where: str = "timeline"  # ``timeline[3] (line 31)``, for messages


@dataclass(frozen=True)
class Scenario:
    """A checked scenario; build with ``load_scenario``."""

    name: str
    firmware: Firmware
    console_baud: int = 115200
    asleep: bool = False
    prompt: str = "pylon>"
    debug_prompt: str = "pylon_debug>"
    login_required: bool = False
    debug: bool = False
    password: str = "debug"
    paging_lines: int = 0
    latency: float = 0.005
    speed: float = 1.0
    drift: bool = True
    seed: int = 1
    clock: Optional[datetime.datetime] = None  # RTC at start; None = the local time when the bank starts
    garbage: float = 0.0
    drop: float = 0.0
    units: int = 3
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unit_settings: Mapping[int, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    timeline: Tuple[TimelineEvent, ...] = ()
    source: str = "<mapping>"
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def settings_for(self, address: int) -> Dict[str, Any]:
        """The unit settings of one address: defaults, then that unit's own keys."""
        merged = dict(self.defaults)
        merged.update(self.unit_settings.get(address, {}))
        return merged


_TOP_KEYS = (
    "name",
    "firmware",
    "console_baud",
    "asleep",
    "prompt",
    "debug_prompt",
    "login_required",
    "debug",
    "password",
    "paging_lines",
    "latency",
    "speed",
    "drift",
    "seed",
    "clock",
    "faults",
    "units",
    "defaults",
    "unit",
    "timeline",
)


def shipped_scenarios() -> List[str]:
    """Names of the scenarios shipped in ``scenarios/`` (without ``.yaml``)."""
    return sorted(n[:-5] for n in os.listdir(SCENARIO_DIR) if n.endswith(".yaml"))


def scenario_path(name_or_path: str) -> str:
    """A shipped scenario's name (``extra2000``) or a file path, to a path."""
    candidate = os.path.join(SCENARIO_DIR, name_or_path + ".yaml")
    if os.sep not in name_or_path and not name_or_path.endswith((".yaml", ".yml")) and os.path.exists(candidate):
        return candidate
    return name_or_path


def load_scenario(source: Union[None, str, Mapping[str, Any], Scenario] = None, **overrides: Any) -> Scenario:
    """A checked ``Scenario`` from a name, a path, a mapping or a scenario; ``overrides`` replace top-level keys."""
    if isinstance(source, Scenario):
        if not overrides:
            return source
        data = dict(source.raw)
        data.update(overrides)
        return _build(data, source.source)
    if source is None:
        source = DEFAULT_SCENARIO
    where = "<mapping>"
    if isinstance(source, str):
        where = scenario_path(source)
        try:
            with open(where, "r", encoding="utf-8") as handle:
                data = yaml.load(handle, Loader=_LineLoader)  # noqa: S506 (a SafeLoader)
        except OSError as exc:
            raise ScenarioError(["cannot read: %s" % exc.strerror], where) from None
        except yaml.YAMLError as exc:
            raise ScenarioError(["not valid YAML: %s" % exc], where) from None
        if data is None:
            data = {}
    else:
        data = source
    if not isinstance(data, Mapping):
        raise ScenarioError(["expected a mapping at the top level"], where)
    data = dict(data)
    data.update(overrides)
    return _build(data, where)


def _build(data: Mapping[str, Any], where: str) -> Scenario:
    problems: List[str] = []
    for key in data:
        if key not in _TOP_KEYS:
            problems.append("%s: unknown key" % key)
    firmware = build_firmware(data.get("firmware"), problems)
    values: Dict[str, Any] = {"firmware": firmware, "source": where, "prompt": firmware.prompt, "raw": dict(data)}
    values["name"] = str(data.get("name") or (os.path.basename(where)[:-5] if where.endswith(".yaml") else "simulated bank"))

    def take(key: str, check: Callable[[Any], Any]) -> None:
        if key in data:
            try:
                values[key] = check(data[key])
            except ValueError as exc:
                problems.append("%s: %s" % (key, exc))

    take("console_baud", _whole(300, 4000000))
    take("asleep", _flag)
    take("prompt", _text)
    take("debug_prompt", _text)
    take("login_required", _flag)
    take("debug", _flag)
    take("password", _word)
    take("paging_lines", _whole(0, 1000))
    take("latency", _number(0, 10))
    take("speed", _number(0.001, 100000))
    take("drift", _flag)
    take("seed", _whole(0))
    take("units", _whole(1, MAX_UNITS))
    if "debug_prompt" not in values:
        prompt = values["prompt"]
        values["debug_prompt"] = (prompt[:-1] if prompt.endswith(">") else prompt) + "_debug>"
    if "clock" in data and data["clock"] is not None:
        clock = data["clock"]
        if isinstance(clock, str):
            try:
                clock = datetime.datetime.strptime(clock.strip(), "%Y-%m-%d %H:%M:%S")
            except ValueError:
                problems.append('clock: expected "YYYY-MM-DD hh:mm:ss"')
        if isinstance(clock, datetime.datetime):
            values["clock"] = clock
        elif not isinstance(clock, str):
            problems.append('clock: expected "YYYY-MM-DD hh:mm:ss"')
    faults = data.get("faults") or {}
    if not isinstance(faults, Mapping):
        problems.append("faults: expected a mapping")
    else:
        for key, value in faults.items():
            if key not in ("garbage", "drop"):
                problems.append("faults.%s: unknown key" % key)
                continue
            try:
                values[key] = _number(0, 1)(value)
            except ValueError as exc:
                problems.append("faults.%s: %s" % (key, exc))

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        problems.append("defaults: expected a mapping")
        defaults = {}
    values["defaults"] = check_unit_changes(_cell_numbers_to_indices(defaults, "defaults", problems), "defaults", problems)
    count = values.get("units", 3)
    per_unit = data.get("unit") or {}
    unit_settings: Dict[int, Dict[str, Any]] = {}
    if not isinstance(per_unit, Mapping):
        problems.append("unit: expected a mapping of address to settings")
    else:
        for address, settings in per_unit.items():
            if isinstance(address, bool) or not isinstance(address, int) or not 1 <= address <= count:
                problems.append("unit.%s: address must be 1..%d (units)" % (address, count))
                continue
            if not isinstance(settings, Mapping):
                problems.append("unit.%d: expected a mapping" % address)
                continue
            where_unit = _at_line("unit.%d" % address, settings)
            unit_settings[address] = check_unit_changes(
                _cell_numbers_to_indices(settings, where_unit, problems), where_unit, problems
            )
    values["unit_settings"] = unit_settings
    values["timeline"] = _timeline(data.get("timeline") or [], count, problems)
    _check_timeline_cells(values["timeline"], values["defaults"], unit_settings, problems)

    if firmware.pwr_rows and count > firmware.pwr_rows:
        problems.append(
            "units: %d units do not fit the %d-row pwr table of firmware %s" % (count, firmware.pwr_rows, firmware.name)
        )
    for address in range(1, count + 1):
        settings = dict(values["defaults"])
        settings.update(unit_settings.get(address, {}))
        _check_unit_consistency(settings, "unit.%d" % address, problems)
    if problems:
        raise ScenarioError(problems, where)
    return Scenario(**values)


def _check_unit_consistency(settings: Mapping[str, Any], where: str, problems: List[str]) -> None:
    cells = settings.get("cells", 15)
    explicit = settings.get("cell_voltages")
    if explicit is not None and len(explicit) != cells:
        problems.append("%s.cell_voltages: %d values for %d cells" % (where, len(explicit), cells))
    offsets = settings.get("cell_offsets")
    if offsets is not None and len(offsets) > cells:
        problems.append("%s.cell_offsets: %d values for %d cells" % (where, len(offsets), cells))
    temps = settings.get("temperatures")
    if temps is not None and len(temps) > cells:
        problems.append("%s.temperatures: more sensors than cells" % where)
    for key in ("cell_states", "cell_temp_states"):
        for index in settings.get(key, {}):
            if index >= cells:
                problems.append("%s.%s: cell %d does not exist (%d cells)" % (where, key, index + 1, cells))
    for index in settings.get("balancing", ()):
        if index >= cells:
            problems.append("%s.balancing: cell %d does not exist (%d cells)" % (where, index + 1, cells))


def _check_timeline_cells(
    timeline: Tuple[TimelineEvent, ...],
    defaults: Mapping[str, Any],
    unit_settings: Mapping[int, Mapping[str, Any]],
    problems: List[str],
) -> None:
    """Every cell a timeline event names exists on its units at that time (an event may change ``cells``)."""
    cells: Dict[int, int] = {}
    for event in timeline:
        for address in event.units:
            count = cells.get(address)
            if count is None:
                settings = dict(defaults)
                settings.update(unit_settings.get(address, {}))
                count = settings.get("cells", 15)
            count = event.changes.get("cells", count)
            cells[address] = count
            settings = dict(event.changes)
            settings["cells"] = count
            if CELL_KEY in event.changes and event.changes[CELL_KEY] >= count:
                problems.append(
                    "%s.cell: cell %d does not exist on unit %d (%d cells)"
                    % (event.where, event.changes[CELL_KEY] + 1, address, count)
                )
            before = len(problems)
            _check_unit_consistency(settings, "%s unit %d" % (event.where, address), problems)
            if len(problems) > before:
                break


def _timeline(events: Any, count: int, problems: List[str]) -> Tuple[TimelineEvent, ...]:
    if not isinstance(events, list):
        problems.append("timeline: expected a list")
        return ()
    out = []
    for number, event in enumerate(events):
        where = _at_line("timeline[%d]" % number, event)
        if not isinstance(event, Mapping):
            problems.append("%s: expected a mapping" % where)
            continue
        event = dict(event)
        try:
            at = _number(0)(event.pop("at", None))
        except ValueError as exc:
            problems.append("%s.at: %s" % (where, exc))
            continue
        units: Tuple[int, ...] = ()
        target = event.pop("unit", None)
        if target == "all":
            units = tuple(range(1, count + 1))
        elif target is not None:
            targets = target if isinstance(target, list) else [target]
            if all(isinstance(t, int) and not isinstance(t, bool) and 1 <= t <= count for t in targets):
                units = tuple(targets)
            else:
                problems.append("%s.unit: expected an address 1..%d, a list of them, or all" % (where, count))
                continue
        console: Dict[str, Any] = {}
        for key in list(event):
            if key in CONSOLE_KEYS:
                try:
                    console[key] = CONSOLE_KEYS[key](event.pop(key))
                except ValueError as exc:
                    problems.append("%s.%s: %s" % (where, key, exc))
        changes = check_unit_changes(_cell_numbers_to_indices(event, where, problems), where, problems, allow_cell=True)
        if changes and not units:
            problems.append("%s: unit changes need unit: N (or all)" % where)
            continue
        if CELL_KEY in changes and "cell_voltage" not in changes:
            problems.append("%s.cell: only meaningful with cell_voltage" % where)
        out.append(TimelineEvent(at=at, units=units, changes=changes, console=console, where=where))
    return tuple(sorted(out, key=lambda e: e.at))
