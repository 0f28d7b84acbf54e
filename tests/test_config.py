"""The configuration schema: defaults, the original program's keys, and clear errors."""

import os
import subprocess
import sys

import pytest
import yaml

from extra200.config import Config, ConfigError, load_config, parse_config, redacted

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ORIGINAL_FILE = """
mqtt:
  active: true
  broker: "10.0.0.2"
  port: 1883
  username: "username"
  password: "password"
  topic_base: "victron-battery-middleware"
serial:
  port: "/dev/ttyUSB0"
  reading_freq: 1
battery:
  addresses: [1, 2, 3, 4, 5]
  num_cells: 15
  max_charge_voltage: 51.0
  max_charge_current: 50.0
  max_discharge_current: 50.0
logging:
  level: DEBUG
  file_path: "/opt/extra200tomqtt/ramdisk/battery_monitor.log"
  file_max_size_kb: 1000
  file_max_files: 5
"""


def test_shipped_config_is_valid_and_points_at_a_real_port():
    config = load_config(os.path.join(ROOT, "config.yaml"))
    assert config.serial.port == "/dev/ttyUSB0"  # never the simulator
    assert config.mqtt.topic_base == "victron-battery-middleware"


def test_shipped_config_documents_every_key():
    """Every key of the schema appears in the shipped file, so users can see it."""
    with open(os.path.join(ROOT, "config.yaml")) as handle:
        shipped = yaml.safe_load(handle)
    defaults = _as_dict(Config())
    missing = sorted(_keys(defaults) - _keys(shipped))
    assert not missing, "config.yaml lacks: %s" % missing


def _as_dict(config):
    import dataclasses

    return dataclasses.asdict(config)


def _keys(data, prefix=""):
    keys = set()
    for name, value in data.items():
        key = prefix + name
        if isinstance(value, dict):
            keys |= _keys(value, key + ".")
        else:
            keys.add(key)
    return keys


def test_original_extra200tomqtt_file_loads_with_same_meaning():
    config = parse_config(yaml.safe_load(ORIGINAL_FILE))
    assert config.mqtt.broker == "10.0.0.2"
    assert config.serial.reading_freq == 1.0
    assert config.battery.addresses == (1, 2, 3, 4, 5)
    assert config.battery.max_charge_voltage == 51.0
    assert config.battery.max_charge_current == 50.0
    assert config.logging.level == "DEBUG"
    # new keys get defaults: the baud and the login are found on the console (it has no baud key:
    # the original program always used 19200, the Extra2000's baud)
    assert config.serial.baud == "auto" and config.serial.login_debug == "auto"
    assert config.mqtt.per_battery_topics is True
    # its own battery keys keep their meaning: numbers, used as caps
    assert config.battery.cells == 15 and config.battery.charge_voltage_cap == 51.0


def test_found_on_the_console_by_default():
    """Only the port and the broker need setting: baud, login, cells and the charge voltage ceiling are auto."""
    config = parse_config({})
    assert (config.serial.baud, config.serial.login_debug) == ("auto", "auto")
    assert (config.battery.num_cells, config.battery.max_charge_voltage) == ("auto", "auto")
    assert config.battery.cells is None and config.battery.charge_voltage_cap is None
    shipped = load_config(os.path.join(ROOT, "config.yaml"))
    assert (shipped.serial.baud, shipped.battery.num_cells, shipped.battery.max_charge_voltage) == ("auto",) * 3


@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        ("serial", "baud", "auto", "auto"),
        ("serial", "baud", "AUTO", "auto"),
        ("serial", "baud", 19200, 19200),
        ("serial", "login_debug", True, True),
        ("battery", "num_cells", 16, 16),
        ("battery", "max_charge_voltage", 56, 56.0),
        ("battery", "max_charge_voltage", "auto", "auto"),
    ],
)
def test_auto_or_a_value(section, key, value, expected):
    config = parse_config({section: {key: value}})
    assert getattr(getattr(config, section), key) == expected


@pytest.mark.parametrize(
    "section, key, value, problem",
    [
        ("serial", "baud", "fast", "serial.baud: must be auto or a whole number, got 'fast'"),
        ("serial", "baud", 12345, "serial.baud: must be one of"),
        ("serial", "login_debug", "maybe", "serial.login_debug: must be auto or true or false"),
        ("battery", "num_cells", 14, "battery.num_cells: must be one of 15, 16, got 14, or auto"),
        ("battery", "num_cells", "automatic", "battery.num_cells: must be auto or a whole number"),
        ("battery", "max_charge_voltage", 60, "battery.max_charge_voltage: must be between 40.0 and 58.4, got 60"),
    ],
)
def test_auto_keys_name_key_and_problem(section, key, value, problem):
    with pytest.raises(ConfigError) as err:
        parse_config({section: {key: value}})
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith(problem), err.value.problems


def test_every_problem_is_reported_with_its_key():
    with pytest.raises(ConfigError) as err:
        parse_config(
            {
                "mqtt": {"port": "x", "brokr": "a"},
                "serial": {"baud": 1234, "wakeup": "sometimes"},
                "battery": {"addresses": [0, 1], "num_cells": 14},
                "logging": {"level": "LOUD"},
            }
        )
    text = str(err.value)
    for fragment in (
        "mqtt.port: must be a whole number",
        "mqtt.brokr: unknown key",
        "serial.baud: must be one of",
        "serial.wakeup",
        "battery.addresses",
        "battery.num_cells",
        "logging.level",
    ):
        assert fragment in text
    assert len(err.value.problems) == 7


def test_wrong_section_type_and_booleans():
    with pytest.raises(ConfigError) as err:
        parse_config({"mqtt": "yes", "serial": {"login_debug": "no"}})
    assert "mqtt: must be a section" in str(err.value)
    assert "serial.login_debug: must be auto or true or false" in str(err.value)


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("mqtt:\n  broker: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert "not valid YAML" in str(err.value) and "line" in str(err.value)


def test_password_is_redacted():
    config = parse_config({"mqtt": {"password": "secret"}})
    assert "secret" not in repr(redacted(config))


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("serial:\n  reading_freq: -1\n", "serial.reading_freq: must be between"),
        ("battery:\n  addresses: [1, 1]\n", "lists an address twice"),
        ("nonsense: 1\n", "nonsense: unknown key"),
    ],
)
def test_command_line_exits_2_naming_the_key(tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "extra200tomqtt.py"), "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert fragment in proc.stderr


def _check_config(*args: str):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "extra200tomqtt.py"), *args, "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_config_reads_the_events_catalogue_the_daemon_would(tmp_path):
    """check-config fails, naming the key and the entry, where the daemon would stop with exit 2."""
    catalogue = tmp_path / "events.yaml"
    catalogue.write_text("power_events:\n  0x8: critical\n")
    path = tmp_path / "config.yaml"
    path.write_text("events:\n  catalogue_file: %s\n" % catalogue)
    proc = _check_config("--config", str(path))
    assert proc.returncode == 2, proc.stdout
    assert "%s has 1 problem:" % path in proc.stderr
    assert (
        "  - events.catalogue_file: %s: power_events.8: level must be one of info, warning, ignore, got 'critical'" % catalogue
        in proc.stderr
    )
    assert "valid" not in proc.stdout
    daemon = subprocess.run(
        [sys.executable, os.path.join(ROOT, "extra200tomqtt.py"), "--config", str(path), "--port", "pylonsim://", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert daemon.returncode == 2  # what check-config now foretells

    catalogue.unlink()
    proc = _check_config("--config", str(path))
    assert proc.returncode == 2
    assert "events.catalogue_file: %s: cannot read the file: No such file or directory" % catalogue in proc.stderr

    catalogue.write_text("power_events:\n  0x8: info\n")
    proc = _check_config("--config", str(path))
    assert (proc.returncode, proc.stdout.strip()) == (0, "%s is valid" % path), proc.stderr
    path.write_text("events:\n  enabled: false\n  catalogue_file: %s\n" % (tmp_path / "missing.yaml"))
    assert _check_config("--config", str(path)).returncode == 0  # not read when the events log is off


def test_check_config_reads_the_simulator_scenario_of_the_port(tmp_path):
    scenario = tmp_path / "bank.yaml"
    scenario.write_text("units: 20\ncolour: red\n")
    path = tmp_path / "config.yaml"
    path.write_text("serial:\n  port: /dev/ttyUSB0\n")
    proc = _check_config("--config", str(path), "--port", "pylonsim://?scenario=%s" % scenario)
    assert proc.returncode == 2
    assert "  - --port: %s: " % scenario in proc.stderr
    assert "colour: unknown key" in proc.stderr and "units: " in proc.stderr
    assert _check_config("--config", str(path), "--port", "pylonsim://us2000c-3").returncode == 0


def test_one_kind_of_error_for_every_file_the_user_writes(tmp_path):
    """Config, events catalogue and scenario problems are ValidationErrors: a list of ``key: problem``."""
    from extra200.events import CatalogueError, EventCatalogue
    from extra200.simulator import ScenarioError, load_scenario
    from extra200.validation import ValidationError

    catalogue = tmp_path / "events.yaml"
    catalogue.write_text("states: [Low]\n")
    caught = []
    for load in (
        lambda: parse_config({"serial": {"baud": "fast"}}, "config.yaml"),
        lambda: EventCatalogue.builtin().load_overrides(str(catalogue)),
        lambda: load_scenario({"units": 0}),
    ):
        with pytest.raises(ValidationError) as error:
            load()
        caught.append(error.value)
    assert [type(e) for e in caught] == [ConfigError, CatalogueError, ScenarioError]
    assert [e.problems[0].split(":")[0] for e in caught] == ["serial.baud", "states", "units"]
    assert caught[1].report() == "%s has 1 problem:\n  - states: must map entries to a level or {name, level}" % catalogue
