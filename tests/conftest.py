"""Shared test fixtures: real servers, paths to the shared captures."""

import os
import sys
from typing import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import Mosquitto  # noqa: E402

CAPTURES = os.path.join(os.path.dirname(ROOT), "shared", "captures")


@pytest.fixture(scope="session")
def broker() -> Iterator[Mosquitto]:
    """One Mosquitto for the session (tests that stop it use ``own_broker``)."""
    server = Mosquitto().start()
    yield server
    server.close()


@pytest.fixture
def own_broker() -> Iterator[Mosquitto]:
    """A Mosquitto for one test, free to be stopped and restarted."""
    server = Mosquitto().start()
    yield server
    server.close()


@pytest.fixture
def captures_dir() -> str:
    if not os.path.isdir(CAPTURES):
        pytest.skip("../shared/captures is not present")
    return CAPTURES


from servers import MariaDB  # noqa: E402


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDB]:
    """One MariaDB for the session; each test uses its own database (tests that stop it use ``own_mariadb``)."""
    server = MariaDB().start()
    yield server
    server.close()


@pytest.fixture
def own_mariadb() -> Iterator[MariaDB]:
    """A MariaDB for one test, free to be stopped, frozen and restarted."""
    server = MariaDB().start()
    yield server
    server.close()
