"""The real daemon recording to a real MariaDB through outages and its own restart.

The server is stopped mid-run, the daemon is restarted while it is down, the
server comes back: every poll's rows arrive exactly once and in order, with
the simulated bank's values, and MQTT publishing never stopped meanwhile.
"""

import time

from daemon_helpers import DaemonProcess, write_config
from extra200.simulator import PtySimulator
from mqtt_helpers import Recorder


def _rows(server, database):
    with server.connect(database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT ts, address, voltage, soc FROM battery_readings ORDER BY id")
        return list(cursor.fetchall())


def _rows_when_up(server, database):
    """Start the server again and read what it holds before the daemon runs again."""
    server.start()
    return _rows(server, database)


def _wait_rows(server, database, count, timeout=60.0):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        try:
            rows = _rows(server, database)
        except Exception:  # table not created yet
            rows = []
        if len(rows) >= count:
            return rows
        time.sleep(0.3)
    return rows


def test_database_outage_and_daemon_restart_lose_nothing(tmp_path, broker, own_mariadb):
    database = own_mariadb.create_database("e2e")
    sim = PtySimulator("us2000c-3", drift=False)
    sim.start()
    config = write_config(
        str(tmp_path),
        broker.port,
        "db",
        database={
            "enabled": True,
            "host": "127.0.0.1",
            "port": own_mariadb.port,
            "user": own_mariadb.user,
            "password": own_mariadb.password,
            "database": database,
            "connect_timeout": 2,
            "timeout": 5,
        },
    )
    recorder = Recorder(broker.port, ("db/pylon",))
    daemon = DaemonProcess(config, sim.path).start()
    try:
        assert len(_wait_rows(own_mariadb, database, 6)) >= 6, daemon.log()
        own_mariadb.stop()
        time.sleep(3)
        # restart the daemon while the database is down; MQTT keeps flowing meanwhile
        assert daemon.terminate() == 0
        daemon = DaemonProcess(config, sim.path).start()
        mark = recorder.count()
        assert recorder.wait_for(lambda t, p: True, timeout=30, after=mark), daemon.log()
        time.sleep(3)
        assert daemon.terminate() == 0  # polls spooled on disk, nothing written yet
        spooled = len(_rows_when_up(own_mariadb, database))
        daemon = DaemonProcess(config, sim.path).start()
        time.sleep(6)
        assert daemon.terminate() == 0
        assert len(_rows(own_mariadb, database)) > spooled + 3, daemon.log()
    finally:
        daemon.kill()
        recorder.close()
        sim.stop()
    rows = _rows(own_mariadb, database)
    keys = [(ts, address) for ts, address, _, _ in rows]
    assert len(keys) == len(set(keys)), "a poll was written twice"
    assert keys == sorted(keys), "rows out of order"
    polls = sorted({ts for ts, _ in keys})
    # every poll has all three units (no poll half written), and polls from the outage are there
    for ts in polls:
        assert sorted(a for t, a in keys if t == ts) == [1, 2, 3]
    gaps = [(b - a).total_seconds() for a, b in zip(polls, polls[1:])]
    assert max(gaps) < 8, "polls missing around the outage: gaps %s" % gaps
    expected = {u.address: u for u in sim.bank.snapshots() if u.present}
    for _, address, voltage, soc in rows:
        assert voltage == expected[address].voltage_mv / 1000.0
        assert soc == expected[address].soc
