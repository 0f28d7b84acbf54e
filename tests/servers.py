"""Real servers for the tests: a Mosquitto broker (and, in database tests, MariaDB) on loopback.

Each server is started on a free port in a temporary directory and stopped
at the end.  Nothing here is a mock: the daemon talks to the same programs
a user runs.  When a program is not installed the tests that need it fail
with a message saying what to install (CI installs everything).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Dict, List, Optional


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d after %.0f s" % (host, port, timeout))


def find_program(name: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next((os.path.join(d, name) for d in extra_dirs if os.path.exists(os.path.join(d, name))), None)
    if path is None:
        raise RuntimeError("%s is not installed (run: bash .ci/setup)" % name)
    return path


def terminate(process: Optional[subprocess.Popen], timeout: float) -> None:
    """SIGTERM and wait; SIGKILL when it does not stop within ``timeout`` seconds."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1:<free port>; ``stop()`` and ``start()`` again on the same port."""

    def __init__(self, password_file: Optional[str] = None, tls: Optional[Dict[str, str]] = None) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mosquitto-")
        self.password_file = password_file
        self.tls = tls  # {"ca", "cert", "key"} paths (make_certificates): the listener speaks TLS only
        self.process: Optional[subprocess.Popen] = None
        self.binary = find_program("mosquitto", "/usr/sbin")

    def _write_config(self) -> str:
        path = os.path.join(self.dir, "mosquitto.conf")
        lines: List[str] = [
            "listener %d 127.0.0.1" % self.port,
            "persistence false",
            # As root Mosquitto would switch to its own user, which cannot read our temporary files.
            *(["user root"] if os.geteuid() == 0 else []),
            "log_dest file %s" % os.path.join(self.dir, "mosquitto.log"),
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if self.tls:
            lines += ["cafile %s" % self.tls["ca"], "certfile %s" % self.tls["cert"], "keyfile %s" % self.tls["key"]]
        if self.password_file:
            lines += ["allow_anonymous false", "password_file %s" % self.password_file]
        else:
            lines.append("allow_anonymous true")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def start(self) -> "Mosquitto":
        config = self._write_config()
        self.process = subprocess.Popen([self.binary, "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        terminate(self.process, 5)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    @staticmethod
    def make_password_file(directory: str, user: str, password: str) -> str:
        """A password file for ``user`` made with mosquitto_passwd."""
        path = os.path.join(directory, "passwd")
        subprocess.run(
            [find_program("mosquitto_passwd", "/usr/bin"), "-b", "-c", path, user, password],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.chmod(path, 0o600)
        return path


class MariaDB:
    """A MariaDB server on 127.0.0.1:<free port> with its own data directory.

    ``start()`` initialises the data directory the first time (root reachable
    only through the server's socket in the temporary directory) and creates
    ``user`` with ``password`` over TCP, as a user's daemon connects.  With
    ``tls`` (``make_certificates``) the server offers TLS and the user must
    use it (``REQUIRE SSL``).
    ``stop()`` shuts the server down cleanly and ``start()`` brings it back on
    the same port with the same data; ``freeze()`` / ``thaw()`` stop and
    continue the process (SIGSTOP / SIGCONT): a server that accepts nothing
    and answers nothing, like a hung database host.
    """

    user = "extra200"
    password = "test-password-6"

    def __init__(self, tls: Optional[Dict[str, str]] = None) -> None:
        self.port = free_port()
        self.tls = tls
        self.dir = tempfile.mkdtemp(prefix="mariadb-")
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mariadb.sock")
        self.binary = find_program("mariadbd", "/usr/sbin", "/usr/libexec")
        self.process: Optional[subprocess.Popen] = None
        self._prepared = False

    def _options(self) -> List[str]:
        options = [
            "--no-defaults",
            "--datadir=%s" % self.datadir,
            # Small files so a fresh server is ready in about a second.
            "--innodb-log-file-size=4M",
            "--innodb-buffer-pool-size=16M",
            "--skip-name-resolve",
        ]
        if os.geteuid() == 0:
            options.append("--user=root")  # mariadbd refuses to run as root otherwise
        if self.tls:
            options += ["--ssl-%s=%s" % (name, self.tls[name]) for name in ("ca", "cert", "key")]
        return options

    def _initialise(self) -> None:
        install = find_program("mariadb-install-db", "/usr/bin", "/usr/scripts")
        result = subprocess.run(
            [install] + self._options() + ["--auth-root-authentication-method=normal", "--skip-test-db"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError("mariadb-install-db failed:\n%s" % result.stdout.decode(errors="replace"))

    def start(self) -> "MariaDB":
        if not os.path.isdir(self.datadir):
            self._initialise()
        log = os.path.join(self.dir, "error.log")
        self.process = subprocess.Popen(
            [self.binary]
            + self._options()
            + [
                "--port=%d" % self.port,
                "--bind-address=127.0.0.1",
                "--socket=%s" % self.socket,
                "--pid-file=%s" % os.path.join(self.dir, "mariadb.pid"),
                "--log-error=%s" % log,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_ready(log)
        except Exception:
            self.stop()
            raise
        if not self._prepared:
            self._create_user()
            self._prepared = True
        return self

    def _wait_ready(self, log: str, timeout: float = 60.0) -> None:
        import pymysql

        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError("mariadbd exited with %s; see %s" % (self.process.returncode, log))
            try:
                pymysql.connect(unix_socket=self.socket, user="root", connect_timeout=2).close()
                return
            except pymysql.MySQLError:
                if time.monotonic() > deadline:
                    raise RuntimeError("mariadbd not ready after %.0f s; see %s" % (timeout, log)) from None
                time.sleep(0.05)

    def _create_user(self) -> None:
        import pymysql

        root = pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)
        try:
            with root.cursor() as cursor:
                require = " REQUIRE SSL" if self.tls else ""
                cursor.execute("CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s" + require, (self.user, self.password))
                cursor.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'127.0.0.1'", (self.user,))
        finally:
            root.close()

    def connect(self, database: Optional[str] = None, **options: object):  # -> pymysql.Connection
        """A connection as the test user, for setting up and checking."""
        import pymysql

        if self.tls:
            options.setdefault("ssl_ca", self.tls["ca"])
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=True,
            **options,
        )

    def create_database(self, name: str) -> str:
        with self.connect() as connection, connection.cursor() as cursor:
            cursor.execute("DROP DATABASE IF EXISTS `%s`" % name)
            cursor.execute("CREATE DATABASE `%s`" % name)
        return name

    def freeze(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.thaw()
        terminate(self.process, 60)  # SIGTERM: a clean shutdown
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def make_certificates(directory: str) -> Dict[str, str]:
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl: paths ``ca``, ``cert``, ``key``."""
    openssl = find_program("openssl", "/usr/bin")
    paths = {name: os.path.join(directory, name + ".pem") for name in ("ca", "ca-key", "cert", "key", "csr")}
    extensions = os.path.join(directory, "san.cnf")
    with open(extensions, "w") as handle:
        handle.write("subjectAltName = IP:127.0.0.1\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509"] + ec + ["-keyout", paths["ca-key"], "-out", paths["ca"], "-days", "2", "-subj", "/CN=test CA"],
        ["req"] + ec + ["-keyout", paths["key"], "-out", paths["csr"], "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", paths["csr"], "-CA", paths["ca"], "-CAkey", paths["ca-key"], "-CAcreateserial"]
        + ["-out", paths["cert"], "-days", "2", "-extfile", extensions],
    ):
        subprocess.run([openssl] + command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"ca": paths["ca"], "cert": paths["cert"], "key": paths["key"]}
