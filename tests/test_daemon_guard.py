"""A failing output is logged once and never stops the loop or the other outputs."""

import logging

from extra200.config import parse_config
from extra200.daemon import Daemon


def test_a_broken_output_is_logged_once_and_recovers(tmp_path, caplog):
    config = parse_config({"mqtt": {"active": False}, "state_dir": str(tmp_path)})
    daemon = Daemon(config, "pylonsim://?drift=0")
    calls = []

    def broken(value):
        calls.append(value)
        if value < 3:
            raise RuntimeError("bug %d" % value)
        return value

    with caplog.at_level(logging.INFO, logger="extra200.daemon"):
        assert daemon._guarded("demo", broken, 1) is None
        assert daemon._guarded("demo", broken, 2) is None
        assert daemon._guarded("demo", broken, 3) == 3
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("demo output failed; the other outputs go on") == 1
    assert "demo output works again" in messages
    assert calls == [1, 2, 3]


def test_poll_and_publish_go_on_when_one_output_breaks(tmp_path, capsys):
    config = parse_config({"mqtt": {"active": False}, "state_dir": str(tmp_path)})
    daemon = Daemon(config, "pylonsim://?drift=0", dry_run=True)
    daemon.start_outputs()

    def explode(*args):
        raise RuntimeError("events bug")

    daemon.events.update = explode  # a bug in one output, injected
    outcome = daemon.poll(full=True)
    assert outcome is not None
    daemon.publish(outcome)
    daemon.stop_outputs()
    printed = capsys.readouterr().out
    assert "victron-battery-middleware/pylon " in printed  # Victron still published
