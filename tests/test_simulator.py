"""The console simulator: the pyserial URL handler, a real pseudo-terminal, the CLI, scenarios and replay.

Everything goes over the wire the way a client talks to a battery: bytes
written at a baud, paced bytes read back.  Timing is asserted as a lower bound
only (a reply takes at least its wire time); upper bounds are generous.
"""

import importlib
import os
import signal
import subprocess
import sys
import time
from typing import Dict, Iterator, List

import pytest
import serial
import yaml

from extra200 import parsing, simulator
from extra200.simulator import (
    PRESETS,
    WAKE_FRAME,
    Console,
    PtySimulator,
    ScenarioError,
    UnitSnapshot,
    load_scenario,
    shipped_scenarios,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGER = b"\rPress [Enter] to be continued,other key to exit"
DONE = b"\r\n\rCommand completed successfully\r\n\r$$\r\n\r"
FAILED_TAIL = b"\r$$\r\n\r"

# A small bank written for these tests (values chosen by hand).
TINY = {
    "name": "tiny",
    "units": 2,
    "drift": False,
    "latency": 0.0,
    "clock": "2025-01-02 03:04:05",
    "defaults": {
        "capacity": 50,
        "current": -2.5,
        "soc": 57,
        "cell_voltage": 3.301,
        "temperatures": [20.0, 21.0, 22.0],
        "bms_temperature": 23.4,
        "mos_temperature": 22.1,
    },
    "unit": {1: {"barcode": "PTEST00000000001", "charge_times": 17, "state_seconds": 42}, 2: {"absent": True}},
}

TINY_PWR_1 = (
    b"pwr 1\n\r@\r\r\n"
    b" ----------------------------\r\r\n"
    b" Power  1\r\r\n"
    b"\r\r\n"
    b" Voltage         : 49515       mV\r\r\n"
    b" Current         : -2500       mA\r\r\n"
    b" Temperature     : 23400       mC\r\r\n"
    b" Coulomb         : 57          %\r\r\n"
    b" Total Coulomb   : 50000       mAH\r\r\n"
    b" Max Voltage     : 54000       mV\r\r\n"
    b" Charge Times    : 17          \r\r\n"
    b" Basic Status    : Dischg  \r\r\n"
    b" Discharge Sec.  : 42      s\r\r\n"
    b" Volt Status     : Normal  \r\r\n"
    b" Current Status  : Normal  \r\r\n"
    b" Tmpr. Status    : Normal  \r\r\n"
    b" Coul. Status    : Normal  \r\r\n"
    b" Soh. Status     : Normal  \r\r\n"
    b" Heater Status   : OFF     \r\n"
    b"\r Protect ENA     : BOV BHV BLV BUV POV PHV PLV PUV CBOT CBHT CBLT CBUT DBOT DBHT DBLT DBUT"
    b" POT PHT COC COC2 COCA DOCA DOC DOC2 SC LCOUL \r\r\n"
    b" Bat Events      : 0x0        \r\r\n"
    b" Power Events    : 0x0        \r\r\n"
    b" System Fault    : 0x0        \r\r\n"
    b" ----------------------------\r\n"
    b"\rCommand completed successfully\r\n"
    b"\r$$\r\n"
    b"\rpylon>"
)
TINY_PWR_HEADER = (
    b"Power Volt   Curr   Tempr  Tlow   Thigh  Vlow   Vhigh  Base.St  Volt.St  Curr.St  Temp.St  Coulomb  "
    b"Time                 B.V.St   B.T.St   MosTempr M.T.St  "
)
TINY_PWR_ROW_1 = (
    b"1     49515  -2500  23400  20000  22000  3301   3301   Dischg   Normal   Normal   Normal   57%      "
    b"2025-01-02 03:04:05  Normal   Normal  22100    Normal  "
)
TINY_PWR_ROW_2 = (
    b"2     -      -      -      -      -      -      -      Absent   -        -        -        -        "
    b"-                    -        -       "
)


@pytest.fixture(scope="module", autouse=True)
def registered() -> None:
    simulator.register()


@pytest.fixture
def tiny_path(tmp_path) -> str:
    path = str(tmp_path / "tiny.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(TINY, handle)
    return path


def write_scenario(tmp_path, data: Dict) -> str:
    path = str(tmp_path / ("%s.yaml" % data.get("name", "scenario")))
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)
    return path


def open_url(query: str = "", baud: int = 115200, timeout: float = 5.0) -> serial.SerialBase:
    return serial.serial_for_url("pylonsim://" + query, baudrate=baud, timeout=timeout)


def exchange(port: serial.SerialBase, command: bytes, until: bytes = b"pylon>") -> bytes:
    """Write ``command``, read to ``until`` (the port's timeout bounds the wait)."""
    port.write(command)
    data = port.read_until(until)
    assert data.endswith(until), "no %r after %r, got %r" % (until, command, data[-200:])
    return data


def quiet(port: serial.SerialBase, seconds: float = 0.4) -> bytes:
    """Everything that arrives within ``seconds``."""
    saved = port.timeout
    port.timeout = seconds
    try:
        return port.read(100000)
    finally:
        port.timeout = saved


def wake(port: serial.SerialBase, console_baud: int) -> None:
    port.baudrate = 1200
    port.write(WAKE_FRAME)
    port.flush()
    time.sleep(0.05)
    port.baudrate = console_baud
    port.reset_input_buffer()


def table_lines(reply: bytes) -> List[str]:
    """The payload lines of a framed reply (between ``@`` and the completion line), CRs removed."""
    text = reply.decode("latin-1")
    body = text.split("\r@", 1)[1].split("Command completed", 1)[0]
    return [line.replace("\r", "") for line in body.split("\n") if line.replace("\r", "").strip()]


# --------------------------------------------------------------------- handler


def test_handler_module_imports_and_register_is_idempotent() -> None:
    module = importlib.import_module("extra200.simulator.protocol_pylonsim")
    assert issubclass(module.Serial, serial.SerialBase)
    simulator.register()
    simulator.register()
    assert serial.protocol_handler_packages.count("extra200.simulator") == 1
    port = serial.serial_for_url("pylonsim://", do_not_open=True)
    assert isinstance(port, module.Serial)


def test_url_forms(tiny_path: str) -> None:
    with open_url(tiny_path) as port:  # pylonsim:///absolute/path.yaml
        assert port.bank.scenario.name == "tiny"
    with open_url("pytes-16cell") as port:  # pylonsim://NAME
        assert exchange(port, b"\r", b"PYTES>") == b"\n\rPYTES>"
    with pytest.raises(serial.SerialException):
        open_url("?colour=blue")
    with pytest.raises(serial.SerialException):
        open_url("?scenario=no-such-scenario")


def test_exact_framing_of_a_key_value_reply(tiny_path: str) -> None:
    with open_url("?scenario=" + tiny_path) as port:
        assert exchange(port, b"\r") == b"\n\rpylon>"  # an empty line: just a new prompt
        assert exchange(port, b"pwr 1\r") == TINY_PWR_1


def test_exact_framing_of_a_table(tiny_path: str) -> None:
    with open_url("?scenario=" + tiny_path) as port:
        reply = exchange(port, b"pwr\n")
    rows = [TINY_PWR_HEADER, TINY_PWR_ROW_1, TINY_PWR_ROW_2] + [(b"%-6d" % n) + TINY_PWR_ROW_2[6:] for n in range(3, 17)]
    assert reply == b"pwr\n\r@\r\r\n" + b"\r\r\n".join(rows) + DONE + b"pylon>"


def test_bat_table_rows_and_info_lines(tiny_path: str) -> None:
    with open_url("?scenario=" + tiny_path) as port:
        bat = exchange(port, b"bat 1\r")
        info = exchange(port, b"info 1\r")
    assert bat.startswith(
        b"bat 1\n\r@\r\r\n"
        b"Battery  Volt     Curr     Tempr    Base State   Volt. State  Curr. State  Temp. State  SOC          "
        b"Coulomb      BAL         \r\r\n"
        b"0        3301     -2500    20000    Dischg       Normal       Normal       Normal       57%         "
        b"28500 mAH      N\r\r\n"
    )
    assert b"\r\n14       3301     -2500    22000    Dischg" in bat
    assert bat.endswith(b"mAH      N" + DONE + b"pylon>")
    assert bat.count(b"\r\r\n") == 16  # the @ line, the header, rows 0-13; row 14 ends \r\n
    assert info.startswith(b"info 1\n\r@\r\n\rDevice address      : 1\r\n\rManufacturer        : Pylon\r\n")
    for line in (
        b"\rBarcode             : PTEST00000000001\r\n\r\r\n",
        b"\rSpecification       : 48V/50AH\r\n",
        b"\rCell Number         : 15\r\n",
        b"\rMax Dischg Curr     : -90000mA\r\n",
        b"\rMax Charge Curr     : 90000mA\r\n",
        b"\rConsole Port rate   : 115200" + DONE,
    ):
        assert line in info


def test_soc_width_shifts_the_columns_after_it(tmp_path) -> None:
    data = dict(TINY, name="full", defaults=dict(TINY["defaults"], soc=100), unit={1: {}, 2: {"soc": 9}})
    with open_url("?scenario=" + write_scenario(tmp_path, data)) as port:
        full = table_lines(exchange(port, b"bat 1\r"))[1]
        low = table_lines(exchange(port, b"bat 2\r"))[1]
        table = table_lines(exchange(port, b"pwr\r"))
    assert full.endswith("Normal       100%         50000 mAH      N")
    assert low.endswith("Normal        9%          4500 mAH      N")
    assert table[1][91:100] == "100%     " and table[2][91:100] == "9%       "


def test_echo_keeps_trailing_spaces_and_errors_skip_the_completion_line(tiny_path: str) -> None:
    with open_url("?scenario=" + tiny_path) as port:
        bad_index = exchange(port, b"bat 20 \r")
        absent = exchange(port, b"bat 2\r")
        unknown = exchange(port, b"xyz 1\r")
    assert bad_index.startswith(b"bat 20 \n\r@\r\n\rInvalid command or fail to excute.\r\n\rUsage:\r\n")
    assert bad_index.endswith(b"\r\n" + FAILED_TAIL + b"pylon>")
    assert absent.startswith(b"bat 2\n\r@\r\n\rInvalid command or fail to excute.\r\n")
    assert unknown == b"xyz 1\n\r@\r\n\rUnknown command 'xyz' - try 'help'\r\n" + FAILED_TAIL + b"pylon>"
    for reply in (bad_index, absent, unknown):
        assert b"Command completed" not in reply


def test_absent_unit_in_the_middle_of_the_bank() -> None:
    with open_url("?scenario=alarms-absent&drift=0") as port:
        table = table_lines(exchange(port, b"pwr\r"))
        for command in (b"pwr 4\r", b"bat 4\r", b"info 4\r", b"stat 4\r"):
            assert b"\rInvalid command or fail to excute.\r\n" in exchange(port, command)
        assert b"Command completed successfully" in exchange(port, b"bat 5\r")
    assert [line.split()[0] for line in table[1:]] == [str(n) for n in range(1, 17)]
    assert table[4].split() == ["4"] + ["-"] * 7 + ["Absent"] + ["-"] * 7
    assert "Absent" not in table[5] and table[5].split()[12] == "SysError"  # Base.St after the .Id columns


def test_login_debug_changes_the_prompt() -> None:
    with open_url("?drift=0") as port:
        assert exchange(port, b"login debug\r", b"pylon_debug>").endswith(DONE + b"pylon_debug>")
        assert exchange(port, b"pwr 1\r", b"pylon_debug>").startswith(b"pwr 1\n\r@\r\r\n ---")
        again = exchange(port, b"login debug\r", b"pylon_debug>")
        assert b"\rInvalid command or fail to excute.\r\n" in again
        assert exchange(port, b"logout\r").endswith(DONE + b"pylon>")


def test_reply_takes_at_least_its_wire_time() -> None:
    with open_url("?drift=0&latency=0") as port:
        exchange(port, b"\r")
        start = time.monotonic()
        reply = exchange(port, b"pwr\r")
        elapsed = time.monotonic() - start
    assert len(reply) > 2400  # a 16-slot table
    assert elapsed >= len(reply) * 10 / 115200.0 * 0.999
    assert elapsed < 10.0


def test_baud_mismatch_gives_garbage_both_ways() -> None:
    with open_url("?drift=0", baud=9600) as port:
        port.write(b"pwr\r")
        garbage = quiet(port)
        assert garbage and all(byte >= 0x80 for byte in garbage)
        port.baudrate = 115200
        assert exchange(port, b"\r") == b"\n\rpylon>"  # the console understood none of it
        exchange(port, b"pwr\r")
        port.write(b"bat 1\r")
        port.baudrate = 9600  # the reply goes out at 115200 ...
        time.sleep(0.05)
        port.baudrate = 115200  # ... part of it was heard wrong, then the rest fine
        assert b"Command completed" in exchange(port, b"\r")


def test_asleep_console_answers_only_after_the_1200_baud_frame() -> None:
    with open_url("?scenario=extra2000&drift=0", baud=19200) as port:
        port.write(b"\r")
        assert quiet(port) == b""
        port.baudrate = 115200
        port.write(b"\r")
        assert quiet(port) == b""
        port.baudrate = 1200
        port.write(b"~20014682C0048520FCC4\r")  # wrong checksum: not the frame
        port.baudrate = 19200
        port.write(b"\r")
        assert quiet(port) == b""
        wake(port, 19200)
        assert exchange(port, b"\r") == b"\n\rpylon>"
        # user mode: data commands need "login debug" on this scenario
        assert b"Unknown command 'pwr'" in exchange(port, b"pwr 1\r")
        exchange(port, b"login debug\r", b"pylon_debug>")
        rejected = exchange(port, b"pwr\r", b"pylon_debug>")  # old firmware: no whole-bank table
        assert rejected.startswith(b"pwr\n\r@\r\n\rInvalid command or fail to excute.\r\n")
        start = time.monotonic()
        detail = exchange(port, b"pwr 2\r", b"pylon_debug>")
        assert time.monotonic() - start >= len(detail) * 10 / 19200.0 * 0.999
        assert b" Power  2\r\r\n" in detail and detail.endswith(DONE + b"pylon_debug>")
        # power lost: silent again, and back in user mode once woken
        port.bank.set_asleep()
        port.write(b"\r")
        assert quiet(port) == b""
        wake(port, 19200)
        assert exchange(port, b"\r") == b"\n\rpylon>"


def test_paging_continues_on_enter_and_aborts_on_other_keys() -> None:
    with open_url("?drift=0") as port:
        first = exchange(port, b"help\r", PAGER)
        assert first.startswith(b"help\n\r@\r\n\rLocal command:\r\n")
        rest = exchange(port, b"\r")
        assert rest.startswith(b"\r\r" + b" " * 50 + b"\r\r")
        assert rest.endswith(DONE + b"pylon>")
        exchange(port, b"help\r", PAGER)
        assert exchange(port, b"q") == b"\r\n" + FAILED_TAIL + b"pylon>"
        # log pauses every 3 entries; \n continues as well as \r
        exchange(port, b"log\r", PAGER)
        page = exchange(port, b"\n", PAGER)
        assert page.count(b" Index   : ") == 3
    with open_url("?drift=0&paging_lines=5") as port:  # any reply pages when the scenario says so
        pages = [exchange(port, b"pwr\r", PAGER)] + [exchange(port, b"\r", PAGER) for _ in range(2)]
        pages.append(exchange(port, b"\r"))
    assert b"Power Volt" in pages[0]
    assert [numbered_rows(page) for page in pages] == [[1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [15, 16]]
    assert pages[-1].endswith(DONE + b"pylon>")


def numbered_rows(data: bytes) -> List[int]:
    """The address column of the pwr rows in ``data``."""
    words = [line.split() for line in data.replace(b"\r", b"\n").split(b"\n")]
    return [int(w[0]) for w in words if w and w[0].isdigit()]


# ---------------------------------------------------------------------- replay


def test_replay_serves_files_and_errors_for_missing_ones(tmp_path) -> None:
    transcript = b"pwr\n\r@\r\r\nPower Volt\r\r\n1     50000\r\n\rCommand completed successfully\r\n\r$$\r\n\rpylon>"
    (tmp_path / "pwr.txt").write_bytes(transcript)
    (tmp_path / "bat_1.txt").write_bytes(b"Battery  Volt\r\r\n0        3300")
    with open_url("?replay=%s" % tmp_path) as port:
        assert exchange(port, b"pwr\r") == transcript
        assert exchange(port, b"bat 1\r") == (
            b"bat 1\n\r@\r\nBattery  Volt\r\r\n0        3300\r\n" + b"\rCommand completed successfully\r\n\r$$\r\n\rpylon>"
        )
        assert exchange(port, b"info 1\r") == (
            b"info 1\n\r@\r\n\rUnknown command 'info' - try 'help'\r\n" + FAILED_TAIL + b"pylon>"
        )
        assert exchange(port, b"\r") == b"\n\rpylon>"
        (tmp_path / "info_1.txt").write_bytes(b"Device address      : 1\r\n")  # files are read on each command
        assert exchange(port, b"info 1\r").startswith(b"info 1\n\r@\r\nDevice address      : 1\r\n\rCommand")


# ------------------------------------------------------- values, drift, timeline


def unit_view(port: serial.SerialBase, address: int) -> Dict[str, object]:
    """Pack, extremes and SoC from the pwr table, cells from bat N (read by tokens, as clients do)."""
    table = table_lines(exchange(port, b"pwr\r"))
    row = next(line.split() for line in table[1:] if line.split()[0] == str(address))
    cells = [int(line.split()[1]) for line in table_lines(exchange(port, b"bat %d\r" % address))[1:]]
    return {
        "volt": int(row[1]),
        "curr": int(row[2]),
        "vlow": int(row[6]),
        "vhigh": int(row[7]),
        "state": row[8],
        "soc": int(row[12].rstrip("%")),
        "cells": cells,
    }


def test_drift_is_consistent_and_follows_the_current(tmp_path) -> None:
    data = {
        "name": "drift",
        "units": 1,
        "speed": 0.001,
        "latency": 0,
        "defaults": {
            "capacity": 50,
            "current": -25.0,
            "soc": 60,
            "cell_voltage": 3.300,
            "cell_offsets": [0, 3, -2, 1, 0, 0, 4, -1, 0, 2, 0, 0, -3, 1, 0],
        },
    }
    with open_url("?scenario=" + write_scenario(tmp_path, data)) as port:
        bank = port.bank
        bank.set_drift(False)
        before = unit_view(port, 1)
        bank.set_drift(True)
        bank.advance(1800)  # half an hour at -25 A on 50 Ah: -25 %
        bank.set_drift(False)
        after = unit_view(port, 1)
        bank.set_current(1, 10.0)
        bank.set_drift(True)
        bank.advance(3600)  # an hour at +10 A: +20 %
        bank.set_drift(False)
        charged = unit_view(port, 1)
    assert (before["soc"], after["soc"], charged["soc"]) == (60, 35, 55)
    assert (before["state"], after["state"], charged["state"]) == ("Dischg", "Dischg", "Charge")
    assert charged["curr"] == 10000
    for view in (before, after, charged):
        cells = view["cells"]
        assert view["volt"] == sum(cells)
        assert (view["vlow"], view["vhigh"]) == (min(cells), max(cells))
    for b, a, c in zip(before["cells"], after["cells"], charged["cells"]):
        assert abs((b - a) - 37.5) <= 1  # 1.5 mV per % of SoC
        assert abs((c - a) - 30.0) <= 1


def test_timeline_changes_happen_in_order(tmp_path) -> None:
    data = {
        "name": "timeline",
        "units": 3,
        "speed": 0.001,
        "drift": False,
        "latency": 0,
        "defaults": {"cell_voltage": 3.3, "temperatures": [25.0], "bms_temperature": 26.0},
        "timeline": [
            {"at": 30, "unit": 2, "absent": True},
            {"at": 60, "unit": 2, "absent": False},
            {"at": 60, "unit": 1, "cell": 4, "cell_voltage": 3.65},  # B1C4: cells count from 1
            {"at": 90, "unit": "all", "temperature": 1.0},
            {"at": 120, "unit": "all", "absent": True},
            {"at": 150, "silent": True},
        ],
    }
    with open_url("?scenario=" + write_scenario(tmp_path, data)) as port:
        bank = port.bank

        def states() -> List[str]:
            return [line.split()[8] for line in table_lines(exchange(port, b"pwr\r"))[1:4]]

        assert states() == ["Idle", "Idle", "Idle"]
        bank.advance(31)
        assert states() == ["Idle", "Absent", "Idle"]
        bank.advance(30)
        assert states() == ["Idle", "Idle", "Idle"]
        cells = table_lines(exchange(port, b"bat 1\r"))[1:]
        assert [line.split()[1] for line in cells[2:5]] == ["3300", "3650", "3300"]
        bank.advance(30)
        row = table_lines(exchange(port, b"pwr\r"))[1].split()
        assert (row[3], row[4], row[5]) == ("1000", "1000", "1000")  # Tempr, Tlow, Thigh
        bank.advance(30)
        assert states() == ["Absent", "Absent", "Absent"]
        bank.advance(30)
        port.write(b"\r")
        assert quiet(port) == b""


def test_runtime_control_api() -> None:
    with open_url("?drift=0&latency=0") as port:
        bank = port.bank
        bank.set_absent(3)
        assert "Absent" in table_lines(exchange(port, b"pwr\r"))[3]
        bank.set_present(3)
        bank.set_cell_voltage(2, 0, 3.555)
        bank.set_temperature(2, -3.0)
        bank.set_current(2, 12.0)
        view = unit_view(port, 2)
        assert view["cells"][0] == 3555 and view["vhigh"] == 3555 and view["curr"] == 12000
        assert view["volt"] == sum(view["cells"]) and view["state"] == "Charge"
        assert table_lines(exchange(port, b"pwr\r"))[2].split()[3:6] == ["-3000", "-3000", "-3000"]
        bank.set_cell_state(2, 0, "High")
        bank.set_events(2, power=0x2000)
        detail = exchange(port, b"pwr 2\r")
        assert b" Power Events    : 0x2000     COULFULL\r\r\n" in detail
        assert table_lines(exchange(port, b"bat 2\r"))[1].split()[5] == "High"
        with pytest.raises(ScenarioError):
            bank.update(2, colour="red")
        with pytest.raises(ScenarioError):
            bank.set_absent(9)

        clean = exchange(port, b"info 1\r")
        bank.cut_next_reply(10)
        port.write(b"info 1\r")
        assert quiet(port) == b"info 1\n" + clean[len(b"info 1\n") :][:10]
        assert exchange(port, b"info 1\r") == clean

        bank.set_garbage(1.0)
        port.write(b"info 1\r")
        garbled = quiet(port)
        assert garbled.startswith(b"info 1\n") and len(garbled) == len(clean)
        assert garbled[len(b"info 1\n") :] != clean[len(b"info 1\n") :]
        bank.set_garbage(0.0)
        bank.set_drop(1.0)
        port.write(b"info 1\r")
        assert quiet(port) == b"info 1\n"  # the echo, then every reply byte lost
        bank.set_drop(0.0)

        bank.set_silent()
        port.write(b"pwr\r")
        assert quiet(port) == b""
        bank.set_silent(False)
        assert exchange(port, b"\r") == b"\n\rpylon>"


def test_scenario_problems_are_reported_together(tmp_path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(
            {
                "units": 20,
                "firmware": "nope",
                "colour": 1,
                "defaults": {"cells": 14, "soc": 140},
                "timeline": [{"at": 5, "soc": 5}],
            }
        )
    text = " | ".join(caught.value.problems)
    for part in ("units", "firmware.preset", "colour", "defaults.cells", "defaults.soc", "timeline[0]"):
        assert part in text
    with pytest.raises(ScenarioError):
        load_scenario({"firmware": "us2kbpl-b66", "units": 9})  # 8-row table


def test_scenario_cells_count_from_1_and_a_wrong_cell_names_its_line(tmp_path) -> None:
    path = tmp_path / "cells.yaml"
    path.write_text(
        "units: 2\n"
        "unit:\n"
        "  2: {cells: 16, balancing: [16], cell_states: {16: High}}\n"
        "timeline:\n"
        "  - {at: 10, unit: 2, cell: 16, cell_voltage: 3.6}\n"
        "  - {at: 20, unit: 1, cell: 15, cell_voltage: 3.6}\n"
        "  - {at: 30, unit: 1, cell: 16, cell_voltage: 3.6}\n"
        "  - {at: 40, unit: all, cell: 0, cell_voltage: 3.6}\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(str(path))
    assert caught.value.problems == [
        "timeline[3] (line 8).cell: cell 0 does not exist (cells count from 1, as in B1C1)",
        "timeline[2] (line 7).cell: cell 16 does not exist on unit 1 (15 cells)",
    ]
    path.write_text(
        path.read_text()
        .replace("  - {at: 30, unit: 1, cell: 16, cell_voltage: 3.6}\n", "")
        .replace("  - {at: 40, unit: all, cell: 0, cell_voltage: 3.6}\n", "")
    )
    scenario = load_scenario(str(path))
    assert [e.changes["cell"] for e in scenario.timeline] == [15, 14]  # console indices
    assert scenario.unit_settings[2]["balancing"] == (15,) and scenario.unit_settings[2]["cell_states"] == {15: "High"}
    with pytest.raises(ScenarioError) as caught:
        load_scenario({"unit": {1: {"balancing": [16]}}})
    assert caught.value.problems == ["unit.1.balancing: cell 16 does not exist (15 cells)"]
    # The bank runs the last event: cell 15 of a 15-cell unit is the last one, not one past it.
    with open_url("?drift=0&latency=0&scenario=" + str(path)) as port:
        port.bank.advance(25)
        cells = table_lines(exchange(port, b"bat 1\r"))[1:]
        assert cells[14].split()[1] == "3600"


# ------------------------------------------------------------ shipped scenarios


def talk_to(port: serial.SerialBase, scenario) -> bytes:
    """Wake and log in as the scenario needs; returns the prompt to read to."""
    if scenario.asleep:
        wake(port, scenario.console_baud)
    prompt = scenario.prompt.encode()
    assert exchange(port, b"\r", prompt) == b"\n\r" + prompt
    if scenario.login_required:
        prompt = scenario.debug_prompt.encode()
        exchange(port, b"login debug\r", prompt)
    return prompt


@pytest.mark.parametrize("name", shipped_scenarios())
def test_every_shipped_scenario_answers(name: str) -> None:
    assert set(shipped_scenarios()) >= {"us2000c-3", "us3000c-16", "pytes-16cell", "extra2000", "alarms-absent"}
    scenario = load_scenario(name)
    fw = scenario.firmware
    done = b"\r" + fw.completion.encode() + b"\r\n\r$$\r\n\r"
    invalid = b"\r@\r\n\r" + fw.invalid.encode() + b"\r\n"
    with open_url("?scenario=%s&drift=0&latency=0" % name, baud=scenario.console_baud, timeout=10) as port:
        prompt = talk_to(port, scenario)
        table = exchange(port, b"pwr\r", prompt)
        if "pwr_table" in fw.rejects:
            assert invalid in table
        else:
            lines = table_lines(table)
            assert lines[0].startswith("Power Volt") and len(lines) == 1 + (fw.pwr_rows or scenario.units)
        for address in range(1, scenario.units + 1):
            present = port.bank.snapshot(address).present
            for command in ("pwr", "bat", "info", "stat"):
                reply = exchange(port, b"%s %d\r" % (command.encode(), address), prompt)
                assert reply.startswith(b"%s %d\n" % (command.encode(), address))
                if present and "%s_n" % command not in fw.rejects:
                    assert reply.endswith(done + prompt), (command, address)
                else:
                    assert invalid in reply and b"Command completed" not in reply
        for command in (b"stat\r", b"info\r", b"bat\r"):  # the unit the cable is plugged into
            assert exchange(port, command, prompt).endswith(done + prompt)


# ---------------------------------------------------------------- parsed values


def expected_values(unit: UnitSnapshot, fw) -> Dict[str, Dict[str, object]]:
    """What each parser must return for one unit, from the snapshot the console printed."""
    volts = unit.voltage_mv / 1000.0
    amps = unit.current_ma / 1000.0
    ids = fw.pwr_layout in ("ids", "ids_sysalarm")
    mos = fw.pwr_layout in ("mos", "ids", "ids_sysalarm")
    row = {
        "present": True,
        "voltage": volts,
        "current": amps,
        "temperature": unit.bms_temp_mc / 1000.0,
        "cell_temp_low": unit.temp_low_mc / 1000.0,
        "cell_temp_high": unit.temp_high_mc / 1000.0,
        "cell_voltage_low": unit.cell_low_mv / 1000.0,
        "cell_voltage_high": unit.cell_high_mv / 1000.0,
        "cell_temp_low_id": unit.temp_low_index if ids else None,
        "cell_temp_high_id": unit.temp_high_index if ids else None,
        "cell_voltage_low_id": unit.cell_low_index if ids else None,
        "cell_voltage_high_id": unit.cell_high_index if ids else None,
        "base_state": unit.base_state,
        "voltage_state": unit.volt_state,
        "current_state": unit.curr_state,
        "temperature_state": unit.temp_state,
        "soc": float(unit.soc),
        "time": unit.rtc,
        "battery_voltage_state": unit.bv_state,
        "battery_temperature_state": unit.bt_state,
        "mos_temperature": (None if unit.mos_temp_mc is None else unit.mos_temp_mc / 1000.0) if mos else None,
        "mos_temperature_state": (None if unit.mos_temp_mc is None else unit.mos_state) if mos else None,
        "system_alarm_state": unit.sys_alarm if fw.pwr_layout == "ids_sysalarm" else None,
        "barcode": unit.barcode if fw.pwr_layout == "pytes" else None,
        "device_type": unit.model if fw.pwr_layout == "pytes" else None,
    }
    detail = {
        "address": unit.address,
        "voltage": volts,
        "current": amps,
        "temperature": unit.bms_temp_mc / 1000.0,
        "soc": float(unit.soc),
        "total_capacity": unit.capacity_mah / 1000.0,
        "charge_times": unit.charge_times if unit.address == 1 else 0,
        "base_state": unit.base_state,
        "voltage_state": unit.volt_state,
        "current_state": unit.curr_state,
        "temperature_state": unit.temp_state,
        "coulomb_state": unit.coul_state,
        "heater_state": "ON" if unit.heater else "OFF",
        "bat_events": unit.bat_events,
        "power_events": unit.power_events,
        "system_fault": unit.system_fault,
    }
    if fw.detail_layout == "pylon":
        detail.update(
            max_voltage=unit.max_voltage_mv / 1000.0, soh_state=unit.soh_state, protect_enabled=tuple(fw.protect.split())
        )
    info = {
        "address": unit.address,
        "manufacturer": unit.manufacturer,
        "device_name": unit.model,
        "main_soft_version": unit.main_soft_version,
        "soft_version": unit.soft_version,
        "barcode": unit.barcode,
        "nominal_capacity": unit.capacity_mah / 1000.0,
        "cell_count": len(unit.cells_mv),
        "max_discharge_current": unit.max_discharge_ma / 1000.0,
        "max_charge_current": unit.max_charge_ma / 1000.0,
    }
    stats = {
        "address": unit.address,
        "cycle_count": unit.stat("CYCLE Times"),
        "soh": float(unit.stat("SOH", 100)) if fw.stat_layout in ("us", "us3000d") else None,
        "charge_times": unit.stat("Charge Times"),
    }
    return {"row": row, "detail": detail, "info": info, "stats": stats}


def assert_fields(record: object, expected: Dict[str, object], where: str) -> None:
    for key, value in expected.items():
        got = getattr(record, key)
        if isinstance(value, float) and got is not None:
            assert got == pytest.approx(value, abs=1e-9), "%s %s" % (where, key)
        else:
            assert got == value, "%s %s: %r != %r" % (where, key, got, value)


def check_parsed(scenario) -> None:
    """Every reply of every unit parses (extra200.parsing) to exactly the values the console printed."""
    fw = scenario.firmware
    console = Console(scenario)
    console.bank.set_debug(True)

    def reply(words: List[str]) -> str:  # the whole transcript, as the console sends it
        return ((" ".join(words) + "\n").encode() + console.command(words).data() + b"\r" + console.prompt()).decode("latin-1")

    units = console.bank.snapshots()
    if "pwr_table" not in fw.rejects:
        rows = {row.address: row for row in parsing.parse_power_table(reply(["pwr"]))}
        present = [u.address for u in units if u.present]
        assert sorted(rows) == (list(range(1, fw.pwr_rows + 1)) if fw.pwr_rows else present)
        assert sorted(a for a, row in rows.items() if row.present) == present
    for unit in (u for u in units if u.present):
        expected = expected_values(unit, fw)
        where = "%s unit %d" % (scenario.name, unit.address)
        if "pwr_table" not in fw.rejects:
            assert_fields(rows[unit.address], expected["row"], where + " pwr")
        detail = parsing.parse_power_detail(reply(["pwr", str(unit.address)]))
        assert_fields(detail, expected["detail"], where + " pwr N")
        cells = parsing.parse_cell_table(reply(["bat", str(unit.address)]), unit.address).cells
        assert [c.voltage for c in cells] == [mv / 1000.0 for mv in unit.cells_mv]
        assert [c.temperature for c in cells] == [t / 1000.0 for t in unit.cell_temps_mc]
        assert [c.voltage_state for c in cells] == list(unit.cell_states)
        assert {c.soc for c in cells} == {float(unit.soc)}
        coulomb = None if (fw.slave_coulomb_zero and unit.address != 1) else unit.remaining_mah / 1000.0
        assert {c.coulomb for c in cells} == {coulomb}
        assert {c.current for c in cells} == {None if fw.bat_variant == "C" else unit.current_ma / 1000.0}
        if fw.bat_variant in ("A", "D"):
            assert [c.balancing for c in cells] == list(unit.balancing)
        for command, parse, key in (("info", parsing.parse_info, "info"), ("stat", parsing.parse_stats, "stats")):
            if "%s_n" % command not in fw.rejects:
                words = [command, str(unit.address)]
            elif unit.address == 1:
                words = [command]  # this firmware only answers for the unit the cable is plugged into
            else:
                continue
            record = parse(reply(words))
            assert_fields(record, expected[key], "%s %s" % (where, command))
            if command == "info":
                assert record.console_baud == scenario.console_baud


@pytest.mark.parametrize("name", shipped_scenarios())
def test_shipped_scenarios_parse_to_their_values(name: str) -> None:
    check_parsed(load_scenario(name, drift=False))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_firmware_layout_parses_to_its_values(preset: str) -> None:
    cells = 16 if preset == "pytes-v1.10" else 15
    # a gap in a present-units-only table (US3000D) is refused by the parser, so the absent unit goes last there
    absent = 3 if PRESETS[preset].pwr_rows == 0 else 2
    other = 5 - absent
    check_parsed(
        load_scenario(
            {
                "name": preset,
                "firmware": preset,
                "units": 3,
                "drift": False,
                "defaults": {
                    "cells": cells,
                    "current": 7.5,
                    "soc": 100,
                    "cell_voltage": 3.401,
                    "cell_offsets": [0, 5, -4, 2],
                    "temperatures": [18.0, 19.0, 17.5],
                },
                "unit": {
                    1: {"balancing": [1], "cell_states": {1: "High"}, "stats": {"cycles": 12, "soh": 91}},
                    absent: {"absent": True},
                    other: {"current": -12.25, "soc": 9, "mos_temperature": None, "power_events": 0x8008},
                },
            }
        )
    )


# --------------------------------------------------------------- pseudo-terminal


@pytest.fixture
def pty_tiny(tiny_path: str) -> Iterator[PtySimulator]:
    sim = PtySimulator(tiny_path)
    sim.start()
    yield sim
    sim.stop()


def test_pty_exact_framing_pacing_and_reopen(pty_tiny: PtySimulator) -> None:
    assert pty_tiny.path and os.path.exists(pty_tiny.path)
    with serial.Serial(pty_tiny.path, 115200, timeout=5) as port:
        assert exchange(port, b"\r") == b"\n\rpylon>"
        start = time.monotonic()
        assert exchange(port, b"pwr 1\r") == TINY_PWR_1
        assert time.monotonic() - start >= len(TINY_PWR_1) * 10 / 115200.0 * 0.999
        table = exchange(port, b"pwr\r")
        assert table.startswith(b"pwr\n\r@\r\r\n" + TINY_PWR_HEADER + b"\r\r\n" + TINY_PWR_ROW_1 + b"\r\r\n")
    with serial.Serial(pty_tiny.path, 115200, timeout=5) as port:  # the terminal survives a close
        assert exchange(port, b"\r") == b"\n\rpylon>"
        exchange(port, b"help\r", PAGER)
        assert exchange(port, b"\r").endswith(DONE + b"pylon>")


def test_pty_replay(tmp_path) -> None:
    (tmp_path / "pwr_2.txt").write_bytes(b" Power  2\r\r\n")
    with PtySimulator(replay=str(tmp_path)) as sim:
        with serial.Serial(sim.path, 115200, timeout=5) as port:
            assert exchange(port, b"pwr 2\r") == b"pwr 2\n\r@\r\n Power  2\r\r\n" + DONE[2:] + b"pylon>"
            assert b"Unknown command 'pwr'" in exchange(port, b"pwr 3\r")


def test_pty_baud_mismatch_and_wake_up() -> None:
    with PtySimulator("extra2000", drift=False) as sim:
        with serial.Serial(sim.path, 115200, timeout=5) as port:
            port.write(b"\r")
            assert quiet(port) == b""  # asleep
            wake(port, 19200)
            assert exchange(port, b"\r") == b"\n\rpylon>"
            port.baudrate = 115200  # the console runs at 19200
            port.write(b"login debug\r")
            garbage = quiet(port)
            assert garbage and all(byte >= 0x80 for byte in garbage)
            port.baudrate = 19200
            assert b"Unknown command 'bat'" in exchange(port, b"bat 1\r")  # the login was not understood


def test_pty_unplug_and_replug_behind_the_link(tmp_path, tiny_path: str) -> None:
    link = str(tmp_path / "ttyPYLON")
    sim = PtySimulator(tiny_path, link=link)
    try:
        first = sim.start()
        assert os.readlink(link) == first
        port = serial.Serial(link, 115200, timeout=2)
        exchange(port, b"\r")
        sim.bank.set_absent(1)
        sim.unplug()
        assert not os.path.lexists(link)
        with pytest.raises(serial.SerialException):
            port.write(b"pwr\r")
            port.read(10)
        port.close()
        second = sim.replug()
        assert os.readlink(link) == second
        with serial.Serial(link, 115200, timeout=5) as port:
            assert b"Invalid command" in exchange(port, b"pwr 1\r")  # the battery kept its state
    finally:
        sim.stop()
    assert not os.path.lexists(link)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_until_a_signal(tmp_path, signum: int) -> None:
    link = str(tmp_path / "ttyPYLON")
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "extra200tomqtt.py"), "simulate", "us2000c-3", "--link", link, "--no-drift"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        path = process.stdout.readline().decode().strip()
        assert path.startswith("/dev/") and os.readlink(link) == path
        with serial.Serial(link, 115200, timeout=5) as port:
            assert exchange(port, b"\r") == b"\n\rpylon>"
            assert b" Power  3\r\r\n" in exchange(port, b"pwr 3\r")
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0
        assert not os.path.lexists(link)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_cli_rejects_a_bad_scenario(tmp_path) -> None:
    bad = write_scenario(tmp_path, {"name": "bad", "units": 0})
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from extra200.simulator import main; sys.exit(main(sys.argv[1:]))", bad],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=30,
    )
    assert result.returncode == 2
    assert b"units" in result.stderr
