"""The JSON status file (atomic rewrite, contents by cells level) and the loop statistics it carries."""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from extra200.derive import summarize_bank
from extra200.events import EventCatalogue, EventMonitor
from extra200.stats import LoopStats, cell_fields, format_duration
from extra200.statusfile import StatusFile, build_status, write_status
from test_database import T0, make_bank


@dataclasses.dataclass(frozen=True)
class Limits:  # stands in for the charge-limits record: any dataclass will do
    cvl: float
    ccl: float
    dcl: float


def make_stats() -> LoopStats:
    stats = LoopStats(started=100.0)
    stats.record_poll(True, 0.4123, 105.0)
    stats.record_poll(False, None, 110.0)
    stats.record_poll(True, 0.5, 115.0)
    stats.record_poll(True, None, 120.0)
    return stats


def test_loop_statistics():
    stats = make_stats()
    assert stats.as_dict(3823.0) == {
        "polls": 4,
        "failed": 1,
        "succeeded": 3,
        "consecutive_failures": 0,
        "success_ratio": 0.75,
        "success_percent": 75.0,
        "last_round_trip": 0.5,
        "last_poll_ok": True,
        "uptime": 3723.0,
    }
    assert stats.as_dict(3823.0, {"power_events:0x1": 2})["event_counts"] == {"power_events:0x1": 2}
    assert stats.summary(3823.0) == "polls 4, failed 1 (75.00 % good), round trip 0.500 s, uptime 1 h 2 min"
    empty = LoopStats(started=0.0)
    assert (empty.success_ratio, empty.as_dict(5.0)["success_percent"]) == (None, None)
    assert empty.summary(5.0) == "polls 0, failed 0 (none yet), round trip not measured, uptime 5 s"
    assert [empty.should_log(t, 3600) for t in (0.0, 10.0, 3599.0, 3600.0, 3700.0)] == [True, False, False, True, False]
    assert format_duration(2 * 86400 + 3 * 3600 + 4 * 60 + 5) == "2 d 3 h 4 min"
    assert format_duration(65) == "1 min 5 s"


def test_cell_levels_each_add_to_the_one_before():
    assert cell_fields("off") == ()
    assert cell_fields("low") == ("voltage",)
    assert set(cell_fields("low")) < set(cell_fields("medium")) < set(cell_fields("high"))
    with pytest.raises(ValueError):
        cell_fields("everything")


def status(level: str, **changes):
    bank = make_bank(0)
    arguments = dict(limits=Limits(52.5, 50.0, 75.0), stats=make_stats(), cells_level=level, events=None)
    arguments.update(changes)
    return build_status(bank, summarize_bank(bank), **arguments)


def test_document_of_the_bank_and_its_units():
    document = status("low")
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert (document["schema"], document["time"], document["time_utc"]) == (1, T0, "2024-05-01T12:00:00Z")
    assert (document["complete"], document["expected"], document["missing"]) == (True, [], [])
    bank = document["bank"]
    assert {k: bank[k] for k in ("voltage", "current", "soc", "capacity", "remaining", "units_online")} == {
        "voltage": 51.35,
        "current": 21.0,
        "soc": 80.0,
        "capacity": 150.0,
        "remaining": 120.0,
        "units_online": 2,
    }
    assert bank["cell_voltage_min"] == {"value": 3.301, "id": "B1C2"}
    assert bank["cell_voltage_max"] == {
        "value": 3.35,
        "id": "B1",
    }  # a tie goes to the first unit; no cell of unit 1 reads 3.350 V
    assert bank["cell_voltage_delta"] == 0.049
    assert document["limits"] == {"cvl": 52.5, "ccl": 50.0, "dcl": 75.0}
    assert document["loop"]["polls"] == 4 and document["loop"]["uptime"] == 20.0  # as of the last poll
    units = document["batteries"]
    assert [(u["address"], u["present"], u["voltage"], u["barcode"]) for u in units] == [
        (1, True, 51.3, "PPTBH0123456701"),
        (2, True, 51.4, "PPTBH0123456702"),
    ]
    assert units[0]["pwr"]["base_state"] == "Charge" and units[0]["pwr"]["time"] == "2024-05-01 12:00:00"
    assert units[0]["detail"]["power_events"] == 0x2000
    assert units[0]["stat"] == {"cycle_count": 321, "soh": 99.0, "charge_times": None}
    assert units[0]["cells"][:2] == [{"cell": 1, "voltage": 3.3}, {"cell": 2, "voltage": 3.301}]
    assert [len(u["cells"]) for u in units] == [15, 16]
    assert "cell_statistics" not in units[0] and "events" not in document


def test_cells_by_level():
    assert all("cells" not in u and "cell_statistics" not in u for u in status("off")["batteries"])
    medium = status("medium")["batteries"][0]
    assert medium["cells"][2] == {
        "cell": 3,
        "voltage": 3.302,
        "temperature": 20.0,
        "base_state": "Charge",
        "voltage_state": "High",
        "current_state": "Normal",
        "temperature_state": "Normal",
    }
    assert medium["cell_statistics"] == {
        "voltage_min": 3.3,
        "voltage_max": 3.314,
        "voltage_delta": 0.014,
        "voltage_min_cell": "B1C1",
        "voltage_max_cell": "B1C15",
        "temperature_min": 20.0,
        "temperature_max": 22.0,
        "temperature_delta": 2.0,
        "temperature_min_cell": "B1C1",
        "temperature_max_cell": "B1C11",
    }
    high = status("high")["batteries"][0]
    assert high["cells"][3] == dict(medium["cells"][3], current=10.5, soc=80.0, coulomb=40.0, balancing=True)
    assert "cell_statistics" in high


def test_events_and_their_counts(tmp_path):
    monitor = EventMonitor(EventCatalogue.builtin(), None)
    bank = make_bank(0)
    monitor.update(bank, T0)
    document = status("off", events=monitor, limits=None)
    assert document["limits"] is None
    assert [e["code"] for e in document["batteries"][0]["events"]] == [
        "Volt. State=High",  # cell 3 (warnings first)
        "Base.St=Charge",
        "0x2000",
    ]
    assert document["batteries"][0]["events"][0] == {
        "kind": "cell",
        "code": "Volt. State=High",
        "name": "cell 3 voltage state High",
        "level": "warning",
        "cell": 3,
    }
    assert document["events"]["counts"] == {
        "cell:Volt. State=High": 1,
        "power_events:0x2000": 1,
        "status:Base.St=Charge": 2,
    }


def test_write_is_atomic_readable_and_leaves_no_temporary_files(tmp_path):
    path = str(tmp_path / "run" / "status.json")  # the directory is created
    write_status(path, {"a": 1})
    write_status(path, {"a": 2, "nan": float("nan")})
    with open(path, encoding="utf-8") as handle:
        assert json.load(handle) == {"a": 2, "nan": None}
    assert os.listdir(str(tmp_path / "run")) == ["status.json"]
    assert os.stat(path).st_mode & 0o777 == 0o644


READER = textwrap.dedent(
    """
    import json, sys
    path, wanted = sys.argv[1], int(sys.argv[2])
    invalid, versions = 0, set()
    for _ in range(wanted):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        try:
            versions.add(json.loads(text)["version"])
        except ValueError:
            invalid += 1
    print(json.dumps({"reads": wanted, "invalid": invalid, "versions": len(versions)}))
    """
)


def test_a_reader_never_sees_a_partial_file(tmp_path):
    """Another process reads the file thousands of times while it is rewritten: every read is whole JSON."""
    path = str(tmp_path / "status.json")
    padding = "x" * 200000  # large enough that a plain rewrite would be seen half-written
    write_status(path, {"version": 0, "padding": padding})
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set():
            written[0] += 1
            write_status(path, {"version": written[0], "padding": padding[: 100000 + written[0] % 100000]})

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = subprocess.run([sys.executable, "-c", READER, path, "5000"], stdout=subprocess.PIPE, check=True, timeout=300)
    finally:
        stop.set()
        thread.join()
    report = json.loads(result.stdout)
    assert report["invalid"] == 0
    assert report["versions"] > 1  # the reads really overlapped the rewrites
    assert written[0] > 1


def test_status_file_logs_a_failing_write_once(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    path = str(blocker / "status.json")
    status_file = StatusFile(path)
    with caplog.at_level(logging.INFO, logger="extra200.statusfile"):
        assert status_file.write({"a": 1}) is False
        assert status_file.write({"a": 2}) is False
        blocker.unlink()
        assert status_file.write({"a": 3}) is True
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "cannot write" in m]) == 1
    assert len([m for m in messages if "written again" in m]) == 1


def test_leftover_temporary_files_are_removed(tmp_path):
    leftover = tmp_path / ".status.json.k2j3h4.tmp"
    leftover.write_text("{")
    other = tmp_path / "other.tmp"
    other.write_text("")
    StatusFile(str(tmp_path / "status.json"))
    assert sorted(os.listdir(str(tmp_path))) == ["other.tmp"]
