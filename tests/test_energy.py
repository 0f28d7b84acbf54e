"""Energy counters: exact integration, persistence, and survival of a kill -9."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT
from extra200.derive import summarize_bank
from extra200.energy import EnergyCounters, EnergyTotals, split_trapezoid
from extra200.files import read_json, write_json_atomic
from extra200.model import Bank, Battery, DeviceInfo, PowerRow

T0 = 1_800_000_000.0  # a wall-clock time; counters survive restarts, so they use time.time()


def _bank(*units, barcodes=None):
    """A bank from (address, volts, amps) triples; ``barcodes`` maps address -> barcode."""
    batteries = {}
    for address, volts, amps in units:
        battery = Battery(address)
        battery.row = PowerRow(address=address, present=True, voltage=volts, current=amps, soc=50.0)
        if barcodes and address in barcodes:
            battery.info = DeviceInfo(address=address, barcode=barcodes[address])
        batteries[address] = battery
    return Bank(batteries=batteries, expected=tuple(batteries), poll_time=T0, complete=True)


def _feed(counters, samples, barcodes=None):
    """``samples``: (time, [(address, volts, amps), ...])."""
    for when, units in samples:
        bank = _bank(*units, barcodes=barcodes)
        counters.update(summarize_bank(bank), when, bank=bank)


def test_trapezoid_splits_exactly_at_a_sign_change():
    assert split_trapezoid(100.0, 300.0, 36.0) == (2.0, 0.0)  # 200 W mean for 0.01 h
    assert split_trapezoid(-100.0, -300.0, 36.0) == (0.0, 2.0)
    # +1800 W to -1800 W in 60 s: the line crosses zero after 30 s; 7.5 Wh each way, never cancelled out
    charged, discharged = split_trapezoid(1800.0, -1800.0, 60.0)
    assert charged == pytest.approx(7.5, abs=1e-12) and discharged == pytest.approx(7.5, abs=1e-12)
    charged, discharged = split_trapezoid(-600.0, 1200.0, 36.0)  # crosses after 12 s
    assert charged == pytest.approx(1200.0 * 24 / 2 / 3600, abs=1e-12)
    assert discharged == pytest.approx(600.0 * 12 / 2 / 3600, abs=1e-12)


def test_known_power_profile_integrates_to_the_exact_kwh(tmp_path):
    counters = EnergyCounters(str(tmp_path / "energy.json"))
    counters.load()
    # One hour at 3600 W charging (50 V x 72 A), polled every 10 s: 3.6 kWh.
    samples = [(T0 + 10 * k, [(1, 50.0, 72.0)]) for k in range(361)]
    # Then a ramp to 1800 W discharging over 60 s after stepping to +1800 W: 7.5 Wh each way.
    samples.append((T0 + 3610, [(1, 50.0, 36.0)]))
    samples.append((T0 + 3670, [(1, 50.0, -36.0)]))
    # Then 10 minutes at 1800 W discharging: 0.3 kWh.
    samples += [(T0 + 3670 + 10 * k, [(1, 50.0, -36.0)]) for k in range(1, 61)]
    _feed(counters, samples)
    step_up = (3600.0 + 1800.0) / 2 * 10 / 3600  # Wh, the 10 s from 3600 W to 1800 W
    expected_charged = (3600.0 + step_up + 7.5) / 1000
    expected_discharged = (7.5 + 300.0) / 1000
    snap = counters.snapshot()
    assert snap.units[1] == EnergyTotals(round(expected_charged, 6), round(expected_discharged, 6))
    assert snap.bank == snap.units[1]
    assert counters.totals("addr:1") == snap.units[1]


def test_gaps_and_unknown_power_are_not_integrated(tmp_path):
    counters = EnergyCounters(str(tmp_path / "energy.json"), max_gap=300.0)
    _feed(counters, [(T0, [(1, 50.0, 20.0)]), (T0 + 10, [(1, 50.0, 20.0)])])  # 1000 W for 10 s
    assert counters.snapshot().units[1].charged_kwh == round(10000 / 3.6e6, 6)
    _feed(counters, [(T0 + 400, [(1, 50.0, 20.0)])])  # 390 s gap: longer than max_gap, skipped
    assert counters.snapshot().units[1].charged_kwh == round(10000 / 3.6e6, 6)
    _feed(counters, [(T0 + 410, [(1, 50.0, 20.0)])])  # counting resumes from the sample after the gap
    assert counters.snapshot().units[1].charged_kwh == round(20000 / 3.6e6, 6)
    # Unknown power (current not read) breaks the line: nothing is guessed across it.
    unknown = _bank((1, 50.0, 20.0))
    unknown.batteries[1].row = PowerRow(address=1, present=True, voltage=50.0, current=None, soc=50.0)
    counters.update(summarize_bank(unknown), T0 + 420, bank=unknown)
    _feed(counters, [(T0 + 430, [(1, 50.0, 20.0)])])
    assert counters.snapshot().units[1].charged_kwh == round(20000 / 3.6e6, 6)
    # The clock going backwards is a gap too, never a negative interval.
    _feed(counters, [(T0 + 100, [(1, 50.0, 20.0)]), (T0 + 110, [(1, 50.0, 20.0)])])
    assert counters.snapshot().units[1].charged_kwh == round(30000 / 3.6e6, 6)


def test_a_unit_absent_for_a_poll_is_not_integrated_across_its_absence(tmp_path):
    counters = EnergyCounters(str(tmp_path / "energy.json"))
    _feed(
        counters,
        [
            (T0, [(1, 50.0, 20.0), (2, 50.0, 20.0)]),
            (T0 + 10, [(1, 50.0, 20.0), (2, 50.0, 20.0)]),
            (T0 + 20, [(1, 50.0, 20.0)]),  # unit 2 absent
            (T0 + 30, [(1, 50.0, 20.0), (2, 50.0, 20.0)]),
            (T0 + 40, [(1, 50.0, 20.0), (2, 50.0, 20.0)]),
        ],
    )
    snap = counters.snapshot()
    assert snap.units[1].charged_kwh == round(40000 / 3.6e6, 6)
    assert snap.units[2].charged_kwh == round(20000 / 3.6e6, 6)
    # The bank integrates its own measured power: 2000 W, 2000 W, 1000 W, 2000 W, 2000 W.
    assert snap.bank.charged_kwh == round((20000 + 15000 + 15000 + 20000) / 3.6e6, 6)


def test_a_unit_keeps_its_counter_by_barcode_when_it_moves(tmp_path):
    path = str(tmp_path / "energy.json")
    counters = EnergyCounters(path)
    _feed(counters, [(T0, [(2, 50.0, 20.0)]), (T0 + 36, [(2, 50.0, 20.0)])], barcodes={2: "PPTBH0240021001"})
    assert counters.snapshot().units[2].charged_kwh == 0.01
    # Unplugged (a poll without it), then re-cabled: the same unit now answers as address 3.
    _feed(counters, [(T0 + 50, [(1, 50.0, 0.0)])])
    _feed(counters, [(T0 + 100, [(3, 50.0, 20.0)]), (T0 + 136, [(3, 50.0, 20.0)])], barcodes={3: "PPTBH0240021001"})
    assert counters.snapshot().units[3].charged_kwh == 0.02
    assert counters.totals("sn:PPTBH0240021001").charged_kwh == 0.02
    assert counters.save()
    # After a restart, before its info was read again, address 3 is still counted as that unit.
    again = EnergyCounters(path)
    again.load()
    _feed(again, [(T0 + 536, [(3, 50.0, 20.0)]), (T0 + 572, [(3, 50.0, 20.0)])])  # a long restart: a gap
    assert again.totals("sn:PPTBH0240021001").charged_kwh == 0.03
    assert again.totals("addr:3") is None


def test_an_address_counter_follows_the_unit_when_its_barcode_arrives(tmp_path):
    counters = EnergyCounters(str(tmp_path / "energy.json"))
    _feed(counters, [(T0, [(1, 50.0, 20.0)]), (T0 + 36, [(1, 50.0, 20.0)])])
    _feed(counters, [(T0 + 72, [(1, 50.0, 20.0)])], barcodes={1: "PPTBH0240021007"})
    assert counters.totals("sn:PPTBH0240021007").charged_kwh == 0.02
    assert counters.totals("addr:1") is None


def test_save_and_load_continue_from_the_saved_sample(tmp_path):
    path = str(tmp_path / "state" / "energy.json")  # the directory is created on the first save
    counters = EnergyCounters(path)
    counters.load()
    _feed(counters, [(T0, [(1, 50.0, 20.0)]), (T0 + 36, [(1, 50.0, 20.0)])])
    assert counters.save()
    data = read_json(path)
    assert data["version"] == 1 and data["counters"]["addr:1"]["time"] == T0 + 36
    assert [name for name in os.listdir(os.path.dirname(path))] == ["energy.json"]  # no temp files left
    restored = EnergyCounters(path)
    restored.load()
    assert restored.totals("addr:1") == EnergyTotals(0.01, 0.0)
    _feed(restored, [(T0 + 72, [(1, 50.0, 20.0)])])  # the 36 s since the saved sample count once
    assert restored.snapshot().units[1] == EnergyTotals(0.02, 0.0)


def test_a_failing_save_is_logged_once_and_keeps_the_totals(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    counters = EnergyCounters(str(blocker / "energy.json"))
    _feed(counters, [(T0, [(1, 50.0, 20.0)]), (T0 + 36, [(1, 50.0, 20.0)])])
    with caplog.at_level(logging.WARNING, logger="extra200.energy"):
        assert not counters.save()
        _feed(counters, [(T0 + 72, [(1, 50.0, 20.0)])])
        assert not counters.save()
    assert len([r for r in caplog.records if "cannot write" in r.getMessage()]) == 1
    assert counters.snapshot().units[1] == EnergyTotals(0.02, 0.0)
    blocker.unlink()  # the directory becomes writable: the next save succeeds with everything
    assert counters.save()
    assert read_json(str(blocker / "energy.json"))["counters"]["addr:1"]["charged_wh"] == pytest.approx(20.0)


def test_save_if_due_keeps_its_cadence(tmp_path):
    path = tmp_path / "energy.json"
    counters = EnergyCounters(str(path))
    _feed(counters, [(T0, [(1, 50.0, 20.0)])])
    assert counters.save_if_due(T0, interval=60)
    written = path.stat().st_mtime_ns
    _feed(counters, [(T0 + 30, [(1, 50.0, 20.0)])])
    assert not counters.save_if_due(T0 + 30, interval=60)  # not yet: the change is pending
    assert path.stat().st_mtime_ns == written
    assert counters.save_if_due(T0 + 60, interval=60)
    assert read_json(str(path))["counters"]["addr:1"]["time"] == T0 + 30


def test_a_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "energy.json"
    path.write_text('{"version": 1, "counters": {"bank": {"charged_wh": 12')  # cut short
    counters = EnergyCounters(str(path))
    counters.load()
    assert counters.totals("bank") is None
    assert (tmp_path / "energy.json.corrupt").exists() and not path.exists()


def test_write_json_atomic_replaces_the_whole_file(tmp_path):
    path = str(tmp_path / "x.json")
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"b": 2})
    assert read_json(path) == {"b": 2}


# A tiny program using EnergyCounters as the daemon does: an update per poll, a save on its cadence.
# Its power falls linearly from +1000 W to -1000 W over 100 polls 10 s apart (50 V x (20 - 0.4 k) A).
_PROGRAM = textwrap.dedent(
    """
    import json, sys, time
    sys.path.insert(0, sys.argv[1])
    from extra200.derive import summarize_bank
    from extra200.energy import EnergyCounters
    from extra200.model import Bank, Battery, DeviceInfo, PowerRow

    path, start, stop, hold = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "hold"
    counters = EnergyCounters(path)
    counters.load()
    for k in range(start, stop + 1):
        now = %r + 10 * k
        battery = Battery(1)
        battery.row = PowerRow(address=1, present=True, voltage=50.0, current=20.0 - 0.4 * k, soc=50.0)
        battery.info = DeviceInfo(address=1, barcode="PPTBH0240021001")
        bank = Bank(batteries={1: battery}, expected=(1,), poll_time=now, complete=True)
        counters.update(summarize_bank(bank), now, bank=bank)
        counters.save_if_due(now, interval=100)  # every 10 polls
        print("updated", k, flush=True)
    if hold:
        print("ready", flush=True)
        time.sleep(600)
    counters.save()
    print(json.dumps([counters.totals("sn:PPTBH0240021001").__dict__, counters.totals("bank").__dict__]))
"""
    % T0
)


def _run(script, path, start, stop, hold):
    return subprocess.Popen(
        [sys.executable, script, ROOT, path, str(start), str(stop), "hold" if hold else "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_counters_survive_kill_9_without_reset_or_double_counting(tmp_path):
    script = str(tmp_path / "counter.py")
    with open(script, "w") as handle:
        handle.write(_PROGRAM)
    path = str(tmp_path / "state" / "energy.json")

    first = _run(script, path, 0, 37, hold=True)
    try:
        for line in first.stdout:
            if line.strip() == "ready":
                break
        else:
            pytest.fail("the counting program ended early: %s" % first.stderr.read())
        os.kill(first.pid, signal.SIGKILL)  # polls 31..37 were counted in memory only
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    # The file holds polls 0..30 exactly: 1000 W falling to 400 W over 300 s.
    on_disk = EnergyCounters(path)
    on_disk.load()
    assert on_disk.totals("bank") == EnergyTotals(round((1000 + 400) / 2 * 300 / 3.6e6, 6), 0.0)

    # Restarted at poll 40: the 100 s since the saved sample count once, then on to poll 100.
    second = _run(script, path, 40, 100, hold=False)
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    unit, bank = json.loads(out.strip().splitlines()[-1])
    # +1000 W to -1000 W over 1000 s: 250 kJ each way, no more, no less.
    expected = round(1000 * 500 / 2 / 3.6e6, 6)
    assert unit == {"charged_kwh": expected, "discharged_kwh": expected}
    assert bank == unit
