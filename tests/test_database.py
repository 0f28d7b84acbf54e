"""MariaDB recording against a real MariaDB server on loopback (tests/servers.py).

Polls are recorded while the server runs, while it is stopped, frozen
(SIGSTOP) and restarted, and across a recorder restarted (or killed with
SIGKILL) while the server was down: every poll's rows must arrive exactly
once, in order, and ``record`` must never wait for the database.
"""

import datetime
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Callable, Iterator, List, Optional

import pytest

from extra200.config import DatabaseConfig, DatabaseTlsConfig
from extra200.database import (
    BATTERY_EVENTS,
    BATTERY_READINGS,
    CELL_READINGS,
    DatabaseRecorder,
    schema_sql,
)
from extra200.derive import summarize_bank
from extra200.events import APPEARED, CLEARED, Event, EventChange
from extra200.model import Bank, Battery, CellRow, CellTable, PowerDetail, PowerRow, Statistics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1714564800.25  # 2024-05-01 12:00:00.25 UTC


# ---------------------------------------------------------------- a hand-made bank


def make_cells(address: int, count: int) -> CellTable:
    return CellTable(
        address,
        tuple(
            CellRow(
                index=i,
                voltage=round(3.300 + i / 1000.0, 3),
                current=10.5,
                temperature=20.0 + i // 5,
                base_state="Charge",
                voltage_state="High" if (address, i) == (1, 2) else "Normal",
                current_state="Normal",
                temperature_state="Normal",
                soc=80.0,
                coulomb=40.0,
                balancing=i == 3,
            )
            for i in range(count)
        ),
    )


def make_battery(address: int, step: int, cells: Optional[CellTable] = None, present: bool = True) -> Battery:
    """Unit ``address`` at poll ``step``: 15 cells on unit 1, 16 on unit 2 (a Pytes beside a Pylontech)."""
    if not present:
        return Battery(address, row=PowerRow(address, False))
    row = PowerRow(
        address=address,
        present=True,
        voltage=round(51.2 + address / 10.0 + step / 100.0, 3),
        current=round(10.5 - step, 3),
        temperature=20.0 + address,
        cell_temp_low=19.0,
        cell_temp_high=21.0,
        cell_temp_low_id=2 if address == 2 else None,
        cell_temp_high_id=5 if address == 2 else None,
        cell_voltage_low=3.301,
        cell_voltage_high=3.35,
        cell_voltage_low_id=4 if address == 2 else None,
        cell_voltage_high_id=9 if address == 2 else None,
        base_state="Charge",
        voltage_state="Normal",
        current_state="Normal",
        temperature_state="Normal",
        soc=80.0 + step,
        time="2024-05-01 12:00:%02d" % (step % 60),
        battery_voltage_state="Normal",
        battery_temperature_state="Normal",
        mos_temperature=25.0 if address == 1 else None,
        mos_temperature_state="Normal" if address == 1 else "-",
        barcode="PPTBH01234567%02d" % address,
    )
    detail = PowerDetail(
        address=address,
        total_capacity=100.0 if address == 1 else 50.0,
        charge_times=123,
        coulomb_state="Normal",
        soh_state="Normal",
        heater_state="OFF",
        protect_enabled=("BOV", "BHV", "COC"),
        bat_events=0,
        power_events=0x2000 if address == 1 else 0,
        system_fault=0,
    )
    return Battery(
        address,
        row=row,
        detail=detail,
        cells=cells if cells is not None else make_cells(address, 15 if address == 1 else 16),
        stats=Statistics(address=address, cycle_count=321, soh=99.0),
        row_time=float(step),
        cells_time=0.0,
    )


def make_bank(step: int, cells: Optional[dict] = None) -> Bank:
    """The bank at poll ``step``; ``cells`` maps addresses to a CellTable to reuse (unchanged cells)."""
    cells = cells or {}
    batteries = {a: make_battery(a, step, cells.get(a)) for a in (1, 2)}
    return Bank(batteries=batteries, expected=(), missing=(), poll_time=T0 + step * 5, complete=True)


def utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------- helpers


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.05)


def db_config(server, database: str, **changes) -> DatabaseConfig:
    base = dict(
        enabled=True,
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        database=database,
        connect_timeout=2.0,
        timeout=3.0,
    )
    base.update(changes)
    return DatabaseConfig(**base)


@pytest.fixture
def recorders() -> Iterator[List[DatabaseRecorder]]:
    """Recorders made by a test, stopped at its end whatever happens."""
    made: List[DatabaseRecorder] = []
    yield made
    for recorder in made:
        recorder.stop(timeout=10)


def new_recorder(recorders, config, spool_dir, level="medium") -> DatabaseRecorder:
    recorder = DatabaseRecorder(config, str(spool_dir), level, retry_max=0.5)
    recorders.append(recorder)
    recorder.start()
    return recorder


def record(recorder: DatabaseRecorder, bank: Bank, events=()) -> float:
    """Record one poll and return how long ``record`` took."""
    started = time.monotonic()
    assert recorder.record(bank, summarize_bank(bank), bank.poll_time, list(events)) is True
    return time.monotonic() - started


def drained(recorder: DatabaseRecorder, written: int) -> Callable[[], bool]:
    return lambda: recorder.written >= written and recorder.spool.pending == 0


def query(server, database: str, sql: str, args=()) -> list:
    import pymysql

    with server.connect(database, cursorclass=pymysql.cursors.DictCursor) as connection:
        with connection.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())


def poll_times(server, database: str) -> List[datetime.datetime]:
    rows = query(server, database, "SELECT ts, address FROM battery_readings ORDER BY id")
    return [r["ts"] for r in rows]


def expected_times(steps) -> List[datetime.datetime]:
    """Both units of each poll, in poll order."""
    return [utc(T0 + s * 5) for s in steps for _ in (1, 2)]


# ---------------------------------------------------------------- tests


def test_shipped_sql_file_is_the_schema_the_program_creates():
    with open(os.path.join(ROOT, "schema", "extra200tomqtt.sql"), encoding="utf-8") as handle:
        assert handle.read() == schema_sql()


def test_sql_file_creates_the_schema_by_hand(mariadb):
    database = mariadb.create_database("by_hand")
    with mariadb.connect(database, client_flag=__import__("pymysql").constants.CLIENT.MULTI_STATEMENTS) as c:
        with c.cursor() as cursor:
            cursor.execute(schema_sql())
            while cursor.nextset():
                pass
    columns = query(
        mariadb,
        database,
        "SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = 'battery_readings' ORDER BY ORDINAL_POSITION",
        (database,),
    )
    assert [r["c"] for r in columns] == ["id"] + [c.name for c in BATTERY_READINGS.columns]
    assert query(mariadb, database, "SELECT value FROM schema_info") == [{"value": "1"}]


def test_rows_match_the_bank_exactly(mariadb, tmp_path, recorders):
    database = "rows_match"
    with mariadb.connect() as c, c.cursor() as cursor:
        cursor.execute("DROP DATABASE IF EXISTS rows_match")  # the recorder creates it
    recorder = new_recorder(recorders, db_config(mariadb, database), tmp_path / "spool", level="medium")
    first = make_bank(0)
    idle = Event("status", "Base.St=Idle", "base state Idle", "info")
    high = Event("cell", "Volt. State=High", "cell 3 voltage state High", "warning", cell=3)
    changes = [
        EventChange(1, idle, CLEARED, first.poll_time),
        EventChange(1, high, APPEARED, first.poll_time),
    ]
    record(recorder, first, changes)
    cells = {a: first.batteries[a].cells for a in (1, 2)}
    record(recorder, make_bank(1, cells))  # the same bat N tables: no new cell rows
    record(recorder, make_bank(2))  # fresh bat N tables
    wait_for(drained(recorder, 3), what="three polls written")

    rows = query(mariadb, database, "SELECT * FROM battery_readings ORDER BY id")
    assert [(r["ts"], r["address"]) for r in rows] == [(utc(T0 + s * 5), a) for s in (0, 1, 2) for a in (1, 2)]
    unit1 = dict(rows[0])
    del unit1["id"]
    assert unit1 == {
        "ts": utc(T0),
        "address": 1,
        "present": 1,
        "voltage": 51.3,
        "current": 10.5,
        "power": round(51.3 * 10.5, 1),
        "soc": 80.0,
        "temperature": 21.0,
        "cell_temp_low": 19.0,
        "cell_temp_high": 21.0,
        "cell_temp_low_cell": None,  # no cell at 19.0 °C in the bat table
        "cell_temp_high_cell": 6,  # located in the bat table: cells 6 to 10 read 21.0 °C
        "cell_voltage_low": 3.301,
        "cell_voltage_high": 3.35,
        "cell_voltage_low_cell": 2,  # located: cell 2 reads 3.301 V
        "cell_voltage_high_cell": None,  # no cell at 3.350 V
        "cell_voltage_delta": 0.049,
        "base_state": "Charge",
        "voltage_state": "Normal",
        "current_state": "Normal",
        "temperature_state": "Normal",
        "unit_time": "2024-05-01 12:00:00",
        "battery_voltage_state": "Normal",
        "battery_temperature_state": "Normal",
        "mos_temperature": 25.0,
        "mos_temperature_state": "Normal",
        "system_alarm_state": None,
        "barcode": "PPTBH0123456701",
        "device_type": None,
        "capacity": 100.0,
        "remaining": 80.0,
        "total_capacity": 100.0,
        "remaining_capacity": None,
        "max_voltage": None,
        "charge_times": 123,
        "coulomb_state": "Normal",
        "soh_state": "Normal",
        "heater_state": "OFF",
        "protect_enabled": "BOV BHV COC",
        "bat_events": 0,
        "power_events": 0x2000,
        "system_fault": 0,
        "balancing": 1,
        "cycle_count": 321,
        "soh": 99.0,
    }
    # Unit 2 prints the cell ids itself (0-based on the console, 1-based here).
    assert (rows[1]["cell_voltage_low_cell"], rows[1]["cell_voltage_high_cell"]) == (5, 10)
    assert (rows[1]["cell_temp_low_cell"], rows[1]["cell_temp_high_cell"]) == (3, 6)
    assert rows[1]["mos_temperature_state"] == "-" and rows[1]["mos_temperature"] is None
    assert [r["voltage"] for r in rows] == [51.3, 51.4, 51.31, 51.41, 51.32, 51.42]

    cells = query(mariadb, database, "SELECT * FROM cell_readings ORDER BY id")
    # Polls 0 and 2 read fresh cells: 15 + 16 rows each; poll 1 reused the tables.
    assert [(c["ts"], c["address"]) for c in cells] == (
        [(utc(T0), 1)] * 15 + [(utc(T0), 2)] * 16 + [(utc(T0 + 10), 1)] * 15 + [(utc(T0 + 10), 2)] * 16
    )
    assert [c["cell"] for c in cells[:31]] == list(range(1, 16)) + list(range(1, 17))
    third = dict(cells[2])
    del third["id"]
    assert third == {  # medium: voltages, temperatures and states; the rest NULL
        "ts": utc(T0),
        "address": 1,
        "cell": 3,
        "voltage": 3.302,
        "temperature": 20.0,
        "base_state": "Charge",
        "voltage_state": "High",
        "current_state": "Normal",
        "temperature_state": "Normal",
        "current": None,
        "soc": None,
        "coulomb": None,
        "balancing": None,
        "extra": None,
    }

    events = query(
        mariadb,
        database,
        "SELECT ts, address, kind, code, cell, name, level, transition FROM battery_events ORDER BY id",
    )
    assert events == [
        {"ts": utc(T0), "address": 1, "kind": "status", "code": "Base.St=Idle", "cell": 0,
         "name": "base state Idle", "level": "info", "transition": "cleared"},
        {"ts": utc(T0), "address": 1, "kind": "cell", "code": "Volt. State=High", "cell": 3,
         "name": "cell 3 voltage state High", "level": "warning", "transition": "appeared"},
    ]  # fmt: skip
    assert query(mariadb, database, "SELECT value FROM schema_info WHERE name = 'schema_version'") == [{"value": "1"}]


def test_high_level_cells_carry_every_column_and_off_none(mariadb, tmp_path, recorders):
    database = mariadb.create_database("levels")
    high = new_recorder(recorders, db_config(mariadb, database), tmp_path / "high", level="high")
    bank = make_bank(0)
    bank.batteries[2] = make_battery(2, 0, CellTable(2, (CellRow(index=0, voltage=3.3, extra={"DTemp. State": "Normal"}),)))
    record(high, bank)
    wait_for(drained(high, 1))
    rows = query(mariadb, database, "SELECT * FROM cell_readings WHERE address = 1 AND cell = 4")
    assert (rows[0]["current"], rows[0]["soc"], rows[0]["coulomb"], rows[0]["balancing"]) == (10.5, 80.0, 40.0, 1)
    extra = query(mariadb, database, "SELECT extra FROM cell_readings WHERE address = 2")
    assert [json.loads(r["extra"]) for r in extra] == [{"DTemp. State": "Normal"}]

    database = mariadb.create_database("levels_off")
    off = new_recorder(recorders, db_config(mariadb, database), tmp_path / "off", level="off")
    record(off, make_bank(0))
    wait_for(drained(off, 1))
    assert query(mariadb, database, "SELECT COUNT(*) AS n FROM cell_readings") == [{"n": 0}]
    assert query(mariadb, database, "SELECT COUNT(*) AS n FROM battery_readings") == [{"n": 2}]


def test_server_stopped_frozen_and_restarted_mid_run(own_mariadb, tmp_path, recorders, caplog):
    """Polls go on at full speed through every outage; afterwards each poll is there exactly once, in order."""
    caplog.set_level(logging.INFO, logger="extra200.database")
    database = own_mariadb.create_database("outage")
    recorder = new_recorder(recorders, db_config(own_mariadb, database), tmp_path / "spool")
    step = 0
    for step in range(0, 5):
        record(recorder, make_bank(step))
    wait_for(drained(recorder, 5), what="the first polls")

    own_mariadb.stop()
    slowest = max(record(recorder, make_bank(s)) for s in range(5, 15))
    wait_for(lambda: "unavailable" in caplog.text, what="the outage to be noticed")
    slowest = max([slowest] + [record(recorder, make_bank(s)) for s in range(15, 20)])
    assert recorder.spool.pending == 15
    own_mariadb.start()
    wait_for(drained(recorder, 20), what="the spooled polls after the restart")

    # A hung server (SIGSTOP): connections open but nothing answers, until the read times out.
    own_mariadb.freeze()
    try:
        slowest = max([slowest] + [record(recorder, make_bank(s)) for s in range(20, 25)])
        wait_for(lambda: caplog.text.count("unavailable") == 2, what="the hung server to be noticed")
        slowest = max([slowest] + [record(recorder, make_bank(s)) for s in range(25, 30)])
    finally:
        own_mariadb.thaw()
    wait_for(drained(recorder, 30), what="the polls recorded while the server was frozen")

    assert slowest < 2.0  # generous: an append and an fsync, never a database round trip
    assert (recorder.rejected, recorder.spool.dropped, recorder.spool.discarded) == (0, 0, 0)
    assert poll_times(own_mariadb, database) == expected_times(range(30))
    assert query(own_mariadb, database, "SELECT COUNT(*) AS n FROM cell_readings") == [{"n": 30 * 31}]
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unavailable" in m]) == 2  # logged once per outage ...
    assert len([m for m in messages if "writable again" in m]) == 2  # ... and once on each recovery


def test_recorder_restarted_while_the_server_was_down(own_mariadb, tmp_path, recorders):
    database = own_mariadb.create_database("restart")
    config = db_config(own_mariadb, database)
    spool = tmp_path / "spool"
    own_mariadb.stop()
    first = new_recorder(recorders, config, spool)
    for step in range(0, 8):
        record(first, make_bank(step))
    first.stop()
    second = new_recorder(recorders, config, spool)
    assert second.spool.pending == 8  # found on disk
    for step in range(8, 12):
        record(second, make_bank(step))
    own_mariadb.start()
    wait_for(drained(second, 12), what="both recorders' polls")
    assert poll_times(own_mariadb, database) == expected_times(range(12))


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path[:0] = [{root!r}, {tests!r}]
    from extra200.config import DatabaseConfig, DatabaseTlsConfig
    from extra200.database import DatabaseRecorder
    from extra200.derive import summarize_bank
    from test_database import make_bank
    config = DatabaseConfig(**{config!r})
    recorder = DatabaseRecorder(config, {spool!r}, "low", retry_max=0.5)
    recorder.start()
    for step in range({count}):
        bank = make_bank(step)
        assert recorder.record(bank, summarize_bank(bank), bank.poll_time, [])
        print(step, flush=True)
    time.sleep(3600)  # killed here, without stop()
    """
)


def test_daemon_killed_while_the_server_was_down_loses_nothing(own_mariadb, tmp_path, recorders):
    database = own_mariadb.create_database("killed")
    config = db_config(own_mariadb, database)
    own_mariadb.stop()
    spool = str(tmp_path / "spool")
    fields = {
        k: getattr(config, k) for k in ("enabled", "host", "port", "user", "password", "database", "connect_timeout", "timeout")
    }
    script = CHILD.format(root=ROOT, tests=os.path.join(ROOT, "tests"), config=fields, spool=spool, count=10)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        lines = [child.stdout.readline().strip() for _ in range(10)]
        assert lines == [str(s) for s in range(10)]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    own_mariadb.start()
    recorder = new_recorder(recorders, config, spool, level="low")
    for step in range(10, 13):
        record(recorder, make_bank(step))
    wait_for(drained(recorder, 13), what="the killed daemon's polls")
    assert poll_times(own_mariadb, database) == expected_times(range(13))


def test_polls_written_again_after_a_lost_cursor_are_not_duplicated(mariadb, tmp_path, recorders):
    """A crash between the commit and the cursor update replays polls: the unique keys make that harmless."""
    database = mariadb.create_database("replay")
    config = db_config(mariadb, database)
    spool = tmp_path / "spool"
    first = new_recorder(recorders, config, spool)
    changes = [EventChange(1, Event("power_events", "0x1", "Over-voltage alarm", "warning"), APPEARED, T0)]
    record(first, make_bank(0), changes)
    for step in range(1, 5):
        record(first, make_bank(step))
    wait_for(drained(first, 5))
    first.stop()
    os.unlink(spool / "cursor.json")  # as if the daemon died right after the commits
    second = new_recorder(recorders, config, spool)
    assert second.spool.pending == 5
    record(second, make_bank(5))
    wait_for(drained(second, 6))
    assert poll_times(mariadb, database) == expected_times(range(6))
    assert query(mariadb, database, "SELECT COUNT(*) AS n FROM cell_readings") == [{"n": 6 * 31}]
    assert query(mariadb, database, "SELECT COUNT(*) AS n FROM battery_events") == [{"n": 1}]
    assert second.rejected == 0 and not os.path.exists(spool / "rejected.jsonl")


def test_full_spool_drops_the_oldest_polls_and_says_so_once(own_mariadb, tmp_path, recorders, caplog):
    caplog.set_level(logging.WARNING, logger="extra200.database")
    database = own_mariadb.create_database("bounded")
    own_mariadb.stop()
    # 0.2 MB: the smallest segment is 64 kB, so dropping frees a segment at a time.
    recorder = new_recorder(recorders, db_config(own_mariadb, database, spool_max_mb=0.2), tmp_path / "spool", level="off")
    count = 400
    for step in range(count):
        record(recorder, make_bank(step))
    spool = recorder.spool
    assert spool.dropped > 0
    assert spool.pending + spool.dropped == count
    assert spool.size() <= 200000
    assert len([r for r in caplog.records if "is full" in r.getMessage()]) == 1
    kept = spool.pending
    own_mariadb.start()
    wait_for(lambda: spool.pending == 0, what="the kept polls")
    # The newest polls survived, in order; the oldest were dropped.
    assert poll_times(own_mariadb, database) == expected_times(range(count - kept, count))


def test_a_poll_the_database_refuses_is_set_aside_and_the_rest_go_on(mariadb, tmp_path, recorders, caplog):
    database = mariadb.create_database("refused")
    recorder = new_recorder(recorders, db_config(mariadb, database), tmp_path / "spool", level="off")
    record(recorder, make_bank(0))
    wait_for(drained(recorder, 1))
    with mariadb.connect(database) as c, c.cursor() as cursor:
        cursor.execute("ALTER TABLE battery_readings MODIFY charge_times TINYINT")  # 123 fits, 1000 does not
    bad = make_bank(1)
    bad.batteries[1].detail = PowerDetail(address=1, charge_times=1000)
    record(recorder, bad)
    record(recorder, make_bank(2))
    wait_for(lambda: recorder.spool.pending == 0 and recorder.rejected == 1, what="the refused poll set aside")
    assert poll_times(mariadb, database) == expected_times([0, 2])
    with open(tmp_path / "spool" / "rejected.jsonl", encoding="utf-8") as handle:
        kept = [json.loads(line) for line in handle]
    assert [k["entry"]["ts"] for k in kept] == [T0 + 5]
    assert "Out of range" in kept[0]["reason"]
    assert any("refused the poll" in r.getMessage() for r in caplog.records)


def test_schema_of_an_older_version_is_upgraded_in_place(mariadb, tmp_path, recorders):
    database = mariadb.create_database("upgrade")
    with mariadb.connect(database) as c, c.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE battery_readings (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, "
            "ts DATETIME(6) NOT NULL, address SMALLINT UNSIGNED NOT NULL, voltage DOUBLE, soc DOUBLE, "
            "UNIQUE KEY poll_key (ts, address))"
        )
        cursor.execute("CREATE TABLE schema_info (name VARCHAR(64) NOT NULL PRIMARY KEY, value VARCHAR(255))")
        cursor.execute("INSERT INTO schema_info VALUES ('schema_version', '0')")
        cursor.execute("INSERT INTO battery_readings (ts, address, voltage, soc) VALUES ('2024-01-01 00:00:00', 1, 52.5, 99)")
    recorder = new_recorder(recorders, db_config(mariadb, database), tmp_path / "spool")
    record(recorder, make_bank(0))
    wait_for(drained(recorder, 1))
    columns = query(
        mariadb,
        database,
        "SELECT COLUMN_NAME AS c FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = 'battery_readings' ORDER BY ORDINAL_POSITION",
        (database,),
    )
    assert [r["c"] for r in columns] == ["id"] + [c.name for c in BATTERY_READINGS.columns]
    rows = query(mariadb, database, "SELECT ts, address, voltage, soc, charge_times FROM battery_readings ORDER BY id")
    assert rows == [
        {"ts": datetime.datetime(2024, 1, 1), "address": 1, "voltage": 52.5, "soc": 99.0, "charge_times": None},
        {"ts": utc(T0), "address": 1, "voltage": 51.3, "soc": 80.0, "charge_times": 123},
        {"ts": utc(T0), "address": 2, "voltage": 51.4, "soc": 80.0, "charge_times": 123},
    ]
    keys = query(
        mariadb,
        database,
        "SELECT DISTINCT INDEX_NAME AS k FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
        "AND TABLE_NAME = 'battery_readings'",
        (database,),
    )
    assert sorted(k["k"] for k in keys) == ["PRIMARY", "poll_key", "unit_time"]
    assert query(mariadb, database, "SELECT value FROM schema_info") == [{"value": "1"}]
    for table in (CELL_READINGS, BATTERY_EVENTS):
        assert query(mariadb, database, "SELECT COUNT(*) AS n FROM information_schema.TABLES "
                     "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s", (database, table.name)) == [{"n": 1}]  # fmt: skip


def test_a_second_daemon_cannot_share_the_spool(tmp_path, recorders, caplog):
    config = DatabaseConfig(enabled=True, host="127.0.0.1", port=9, connect_timeout=1.0)
    first = new_recorder(recorders, config, tmp_path / "spool")
    second = new_recorder(recorders, config, tmp_path / "spool")
    assert any("in use by another process" in r.getMessage() for r in caplog.records)
    bank = make_bank(0)
    assert second.record(bank, summarize_bank(bank), bank.poll_time, []) is False
    assert first.record(bank, summarize_bank(bank), bank.poll_time, []) is True


def test_tls_with_certificate_checks(tmp_path, recorders, caplog):
    """A server requiring TLS: with its CA (or insecure) polls are written; with an unknown CA they wait."""
    from servers import MariaDB, make_certificates

    certificates = make_certificates(str(tmp_path))
    server = MariaDB(tls=certificates).start()
    try:
        database = server.create_database("tls")
        tls = DatabaseTlsConfig(enabled=True, ca_file=certificates["ca"])
        verified = new_recorder(recorders, db_config(server, database, tls=tls), tmp_path / "verified")
        record(verified, make_bank(0))
        wait_for(drained(verified, 1), what="a poll over TLS")
        assert poll_times(server, database) == expected_times([0])

        unknown_ca = DatabaseTlsConfig(enabled=True)  # the system's CAs do not know the test CA
        refused = new_recorder(recorders, db_config(server, database, tls=unknown_ca), tmp_path / "unknown")
        record(refused, make_bank(1))
        wait_for(lambda: "unavailable" in caplog.text, what="the refusal")
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        assert refused.written == 0 and refused.spool.pending == 1

        insecure = DatabaseTlsConfig(enabled=True, insecure=True)
        unchecked = new_recorder(recorders, db_config(server, database, tls=insecure), tmp_path / "insecure")
        record(unchecked, make_bank(2))
        wait_for(drained(unchecked, 1), what="a poll over unchecked TLS")
        assert poll_times(server, database) == expected_times([0, 2])
    finally:
        for recorder in recorders:
            recorder.stop(timeout=10)
        server.close()
