"""Episodes: a fault is logged once when it starts and once when it ends, per key."""

import logging
import threading
import time

import pytest

from extra200.reporting import Episodes

LOGGER = "extra200.test_reporting"


@pytest.fixture
def episodes():
    return Episodes(logging.getLogger(LOGGER))


def _lines(caplog):
    return [(r.name, r.levelname, r.getMessage()) for r in caplog.records]


def test_a_fault_is_logged_once_and_its_recovery_once(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert episodes.fault("broker", logging.WARNING, "cannot reach %s", "host") is True
        assert episodes.fault("broker", logging.WARNING, "cannot reach %s", "host") is False
        assert episodes.fault("broker", logging.ERROR, "something else %d", 3) is False  # same episode: silent
        assert episodes.recovered("broker", "%s is back", "host") is True
        assert episodes.recovered("broker", "%s is back", "host") is False
    assert _lines(caplog) == [
        (LOGGER, "WARNING", "cannot reach host"),
        (LOGGER, "INFO", "host is back"),
    ]


def test_a_new_episode_after_a_recovery_is_logged_again(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(2):
            episodes.fault("disk", logging.ERROR, "disk full")
            episodes.fault("disk", logging.ERROR, "disk full")
            episodes.recovered("disk", "disk written again")
    assert [m for _, _, m in _lines(caplog)] == ["disk full", "disk written again"] * 2


def test_a_recovery_without_a_reported_fault_says_nothing(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        assert episodes.recovered("never failed", "works again") is False
    assert caplog.records == []


def test_keys_are_independent_episodes(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        episodes.fault(1, logging.ERROR, "battery %d absent", 1)
        episodes.fault(2, logging.ERROR, "battery %d absent", 2)
        episodes.fault(1, logging.ERROR, "battery %d absent", 1)
        episodes.recovered(2, "battery %d present again", 2)
        episodes.fault(2, logging.ERROR, "battery %d absent", 2)
    assert [m for _, _, m in _lines(caplog)] == [
        "battery 1 absent",
        "battery 2 absent",
        "battery 2 present again",
        "battery 2 absent",
    ]
    assert sorted(episodes.keys()) == [1, 2]


def test_the_recovery_line_takes_its_own_level(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        episodes.fault("db", logging.WARNING, "database unavailable")
        episodes.recovered("db", "database writable again", level=logging.WARNING)
        episodes.fault("quiet", logging.DEBUG, "only for the curious")
    assert [level for _, level, _ in _lines(caplog)] == ["WARNING", "WARNING", "DEBUG"]


def test_forget_closes_an_episode_without_a_line(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        episodes.fault("noise", logging.WARNING, "reads disagree")
        assert episodes.forget("noise") is True
        assert episodes.forget("noise") is False
        assert episodes.recovered("noise", "agree again") is False
        episodes.fault("noise", logging.WARNING, "reads disagree")
    assert [m for _, _, m in _lines(caplog)] == ["reads disagree", "reads disagree"]
    assert episodes.keys() == ["noise"]


def test_keys_is_a_copy_the_caller_may_close_while_going_through(episodes):
    for address in (1, 2, 3):
        episodes.fault(address, logging.DEBUG, "absent")
    for address in episodes.keys():
        episodes.forget(address)
    assert episodes.keys() == []


def test_a_fault_can_carry_the_traceback(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        try:
            raise RuntimeError("bug in an output")
        except RuntimeError:
            episodes.fault("output", logging.ERROR, "%s output failed", "demo", exc_info=True)
        episodes.fault("other", logging.ERROR, "no traceback here")
    with_traceback, without = caplog.records
    assert with_traceback.exc_info is not None and with_traceback.exc_info[0] is RuntimeError
    assert "bug in an output" in caplog.text
    assert not without.exc_info


def test_the_record_names_the_callers_line(episodes, caplog):
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        episodes.fault("x", logging.WARNING, "fault")
        episodes.recovered("x", "recovered")
    caller = ("test_reporting.py", "test_the_record_names_the_callers_line")
    assert [(r.filename, r.funcName) for r in caplog.records] == [caller] * 2


def test_a_level_below_the_loggers_still_opens_the_episode(episodes, caplog):
    """A fault not shown (DEBUG on a quiet logger) is still one episode: no line later either."""
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert episodes.fault("victron link", logging.DEBUG, "lost the connection") is True
        assert episodes.fault("victron link", logging.DEBUG, "lost the connection") is False
    assert caplog.records == []
    assert episodes.keys() == ["victron link"]


class _SlowKey:
    """A key whose hashing lets other threads run (it sleeps): an unguarded check-then-add would let several in."""

    def __hash__(self) -> int:
        time.sleep(0.001)
        return 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _SlowKey)


def test_threads_racing_on_one_key_log_it_once(episodes, caplog):
    key = _SlowKey()
    start = threading.Barrier(8)
    logged = []

    def report():
        start.wait()
        for _ in range(10):
            logged.append(episodes.fault(key, logging.WARNING, "down"))

    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        threads = [threading.Thread(target=report) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert logged.count(True) == 1
    assert [r.getMessage() for r in caplog.records] == ["down"]
