"""Starts and stops the whole network on one machine: the embedded PostgreSQL and broker
(unless external ones are configured), the topics, the token issuer and the four
services, each its own process. Used by `punte up`, the end-to-end tests and bench/."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from punte.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    HeldPort,
    free_port,
    terminate_together,
    wait_for_port,
)
from punte.state import State
from runtime import http_server
from runtime.settings import Settings

if TYPE_CHECKING:
    from punte.apache_kafka import KafkaCluster

SERVICES = ("intake", "referral", "notification", "audit")
ROOT = Path(__file__).resolve().parent.parent
# Each watched process's state, written by `punte up`'s supervisor, read by `punte status`.
SUPERVISION_FILE = "supervision.json"


def _provision(bootstrap: str, settings: Settings | None) -> None:
    """Every topic and the broker's epoch (decision 0026). Imported here, with SQLAlchemy and
    aiokafka: the operator's remote commands import this module for its names only."""
    from runtime.broker_epoch import provision

    asyncio.run(provision(bootstrap, Settings().retention_file, settings))


@dataclass(frozen=True)
class RestartPolicy:
    """When a supervised process that exited is started again, and when not any more."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    # Up this long: healthy; its next exit starts the backoff afresh.
    healthy_after: float = 60.0
    # An exit of the program's own this soon after a start is a failure at start (a missing
    # secret, a bad setting): repeating it cannot help, so after `give_up_after` in a row the
    # supervisor gives up and says why. A kill from outside (SIGKILL, SIGTERM: an operator, the
    # OOM killer) says nothing of the program and does not count. Services are ready about 5 s
    # after they start (decision 0005).
    quick_exit: float = 15.0
    give_up_after: int = 5


@dataclass
class Watch:
    """What the supervisor knows of one process; `punte status` shows it as it is."""

    state: str = "running"  # running, restarting, given up, lost
    restarts: int = 0
    pid: int | None = None
    last_exit: str | None = None
    reason: str | None = None
    failures: int = 0  # exits since the last healthy period: the backoff's exponent
    quick_failures: int = 0  # exits in a row soon after their start
    restart_at: float | None = None
    started_at: float = 0.0

    def exited(self, uptime: float, policy: RestartPolicy, own: bool = True) -> float | None:
        """Count an exit after ``uptime`` seconds, the program's ``own`` or a kill from outside;
        the delay before the next start, or None when the policy says to give up."""
        if uptime >= policy.healthy_after:
            self.failures = 0
        self.failures += 1
        if own:
            self.quick_failures = self.quick_failures + 1 if uptime < policy.quick_exit else 0
        if self.quick_failures >= policy.give_up_after:
            return None
        return min(policy.max_delay, policy.first_delay * 2 ** (self.failures - 1))

    def shown(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k not in ("failures", "quick_failures", "restart_at",
                                                                    "started_at")}


@dataclass
class Program:
    """A process the supervisor watches: how to start it again (None: it is only watched,
    its loss reported) and the log its restarts are written to."""

    process: Callable[[], subprocess.Popen | None]
    start: Callable[[], None] | None
    log_file: Path


# Signals sent from outside: the process did not fail, it was stopped.
KILLED_FROM_OUTSIDE = frozenset({-signal.SIGKILL, -signal.SIGTERM})


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with {returncode}"


def last_lines(path: Path, count: int = 5, width: int = 300) -> list[str]:
    """The end of a log, each line cut to ``width``: why a process failed, for the operator."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
            lines = log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return [line[:width] for line in lines if line.strip()][-count:]


def log_line(path: Path, message: str, level: str = "warning") -> None:
    """A line in the watched process's own log, in the services' JSON-lines shape."""
    entry = {"timestamp": datetime.now(timezone.utc).isoformat(), "level": level,
             "logger": "punte.supervisor", "event": message}
    with path.open("a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


class Supervisor:
    """Starts again, with capped exponential backoff, a watched process that exited (a crash,
    SIGKILL, the OOM killer); gives up on one that keeps failing at start. One thread, a
    check every `every` seconds; `lock` is held while it acts, so a caller changing the
    processes (punte.faults) holds it too."""

    def __init__(self, programs: dict[str, Program], policy: RestartPolicy = RestartPolicy(),
                 on_change: Callable[[dict[str, dict[str, object]]], None] = lambda _: None,
                 every: float = 0.5) -> None:
        self.programs = programs
        self.policy = policy
        self.on_change = on_change
        self.every = every
        self.lock = threading.RLock()
        now = time.monotonic()
        self.watches = {name: Watch(pid=_pid(p.process()), started_at=now) for name, p in programs.items()}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def snapshot(self) -> dict[str, dict[str, object]]:
        with self.lock:
            return {name: watch.shown() for name, watch in self.watches.items()}

    def start(self) -> "Supervisor":
        self.on_change(self.snapshot())
        self._thread = threading.Thread(target=self._run, name="punte-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            self.check()

    def adopt(self, name: str) -> None:
        """A process started again by someone else (punte.faults): watched afresh, not counted."""
        with self.lock:
            watch = self.watches[name]
            watch.pid, watch.started_at = _pid(self.programs[name].process()), time.monotonic()
            watch.state = "running"
        self.on_change(self.snapshot())

    def check(self) -> None:
        """One look at every watched process."""
        changed = False
        with self.lock:
            for name, program in self.programs.items():
                if self._stopping.is_set():
                    break
                watch = self.watches[name]
                now = time.monotonic()  # a restart may have taken a while
                if watch.state == "running":
                    process = program.process()
                    if process is not None and process.poll() is not None:
                        self._exited(name, program, watch, describe_exit(process.returncode), now,
                                     own=process.returncode not in KILLED_FROM_OUTSIDE)
                        changed = True
                elif watch.state == "restarting" and watch.restart_at is not None and now >= watch.restart_at:
                    self._restart(name, program, watch)
                    changed = True
        if changed:
            self.on_change(self.snapshot())

    def _exited(self, name: str, program: Program, watch: Watch, how: str, now: float,
                own: bool = True) -> None:
        uptime = now - watch.started_at
        watch.last_exit = f"{how} after {uptime:.1f} s"
        if program.start is None:
            watch.state = "lost"
            watch.reason = f"{name} {watch.last_exit}; it is not started again by the supervisor"
            log_line(program.log_file, f"supervisor: {watch.reason}", "error")
            return
        delay = watch.exited(uptime, self.policy, own)
        if delay is None:
            watch.state = "given up"
            tail = " | ".join(last_lines(program.log_file))
            watch.reason = (f"{name} failed {watch.quick_failures} times in a row within "
                            f"{self.policy.quick_exit:.0f} s of starting; last log lines: {tail}")
            log_line(program.log_file, f"supervisor: {name} {watch.last_exit}; giving up after "
                                       f"{watch.quick_failures} failures at start", "error")
            return
        watch.state, watch.restart_at = "restarting", now + delay
        log_line(program.log_file, f"supervisor: {name} {watch.last_exit}; restart {watch.restarts + 1} "
                                   f"in {delay:.1f} s")

    def _restart(self, name: str, program: Program, watch: Watch) -> None:
        assert program.start is not None
        watch.restarts += 1
        watch.restart_at = None
        watch.started_at = time.monotonic()
        try:
            program.start()
        except Exception as exc:  # e.g. PostgreSQL not accepting connections in time
            self._exited(name, program, watch, f"failed to start ({exc!r})", time.monotonic())
            return
        watch.state, watch.pid = "running", _pid(program.process())
        log_line(program.log_file, f"supervisor: {name} restarted (restart {watch.restarts}, "
                                   f"pid {watch.pid})", "info")


def _kafka_admin_password(folder: Path, given: str | None = None) -> str:
    """The cluster's super user password, kept beside its data (0600): the storage was
    formatted with it, so a later `punte up --broker kafka` on the same state must use it
    again, and `punte status` reads the topics with it."""
    import secrets

    path = folder / "admin-password"
    if given is not None or not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(given or secrets.token_urlsafe(24))
    return path.read_text().strip()


def replica_names(service: str, replicas: int) -> list[str]:
    """The process names of a service's replicas: the first keeps the service's name (its
    port, log and URL are the service's), the others are "<service>-2", "<service>-3"..."""
    return [service, *(f"{service}-{i}" for i in range(2, replicas + 1))]


def service_of(process_name: str) -> str:
    """The service a process name (``replica_names``) belongs to."""
    base, _, number = process_name.rpartition("-")
    return base if base in SERVICES and number.isdigit() else process_name


def _pid(process: subprocess.Popen | None) -> int | None:
    return process.pid if process is not None else None


@dataclass
class Stack:
    state_dir: Path
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    # The ports of the HTTP processes (the issuer, each service replica), held from the
    # moment they are chosen until the stack stops (HeldPort): each start gets its socket.
    held_ports: dict[str, HeldPort] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    # Restart crashed processes (`punte up`, the tests); off for one that is watched elsewhere.
    supervise: bool = True
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    supervisor: Supervisor | None = None
    # "kafka": a three-node Apache Kafka cluster instead of Tansu (punte.apache_kafka; Java
    # and the fetched jars), the network's topics, principals and ACLs applied to it, each
    # service connecting as its own principal (decision 0027). A running `kafka` given by
    # the caller is used as it is (not stopped), with its `kafka_credentials_file`.
    broker_kind: str = "tansu"
    kafka: "KafkaCluster | None" = None
    kafka_credentials_file: Path | None = None
    kafka_credentials: dict[str, str] = field(default_factory=dict, repr=False)
    _owns_kafka: bool = False
    # Processes per service, each with its own HTTP port and log, in the service's consumer
    # groups and on the service's database (bench/e2e.py's two-replica figure; decision 0035).
    replicas: int = 1

    @property
    def service_processes(self) -> list[str]:
        """Every service process's name, replicas included (``replica_names``)."""
        return [name for service in SERVICES for name in replica_names(service, self.replicas)]

    @property
    def state(self) -> State:
        return State(self.state_dir)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start_infrastructure(self) -> None:
        self.state_dir = self.state_dir.resolve()
        self.state.prepare()
        (self.state_dir / "logs").mkdir(exist_ok=True)
        if self.database_url is None:
            self.postgres = EmbeddedPostgres(self.state_dir / "postgres").start()
            self.database_url = self.postgres.url
        if self.kafka_bootstrap is None and self.broker_kind == "kafka":
            self._start_kafka()
            return
        if self.kafka_bootstrap is None:
            self.broker = EmbeddedBroker(log_file=self.state_dir / "logs" / "broker.log").start()
            self.kafka_bootstrap = self.broker.bootstrap
        # Every topic (ingress topics keep messages for retention.yaml's ingress_days only,
        # issue #11) and the broker's epoch (decision 0026).
        _provision(self.kafka_bootstrap, self._client_settings())

    def restart_broker(self) -> None:
        """The embedded broker exited, its log (in memory) with it: a new, empty one on the same
        port, its topics created as at start and a new epoch claimed. The services notice the
        epoch by themselves, republish their kept outboxes and read the new log from its
        beginning (decision 0026)."""
        assert self.broker is not None
        # The services are paused (SIGSTOP) until the broker is provisioned: a producer's batch
        # in flight when the broker died is retried by the client on its own, and written to
        # the empty broker before its topics exist, Tansu 0.6 gives its partition overlapping
        # offsets (two records at one offset; its log: AlreadyExists ... .batch).
        paused = [p for n, p in self.processes.items() if service_of(n) in SERVICES and p.poll() is None]
        for process in paused:
            os.killpg(process.pid, signal.SIGSTOP)
        try:
            self.broker.start()
            _provision(self.broker.bootstrap, self._client_settings())
        except BaseException:
            self.broker.kill()  # started again with the next attempt
            raise
        finally:
            for process in paused:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGCONT)

    def _client_settings(self) -> Settings | None:
        """How the stack's own clients reach the broker: its embedded broker takes plain
        connections, whatever PUNTE_KAFKA_* the caller's environment holds; a broker given
        by the caller, as that environment says (None)."""
        if self.broker is None:
            return None
        return Settings(kafka_security_protocol="PLAINTEXT", kafka_sasl_mechanism=None, kafka_username=None,
                        kafka_password=None, kafka_idempotent_producer=False, kafka_replication_factor=1)

    def _start_kafka(self) -> None:
        """Apache Kafka (started unless given), then `punte kafka apply`'s declaration: the
        topics, a SCRAM credential per service and institution, the ACLs."""
        from punte.apache_kafka import KafkaCluster, available
        from punte.kafka_admin import apply_network, load_credentials

        folder = self.state_dir / "kafka"
        if self.kafka is None:
            reason = available()
            if reason is not None:
                raise RuntimeError(f"--broker kafka: {reason}")
            self.kafka = KafkaCluster(folder, admin_password=_kafka_admin_password(folder))
            self._owns_kafka = True
            self.kafka.start()
        else:  # where `punte status` finds it
            _kafka_admin_password(folder, self.kafka.admin_password)
        self.kafka_bootstrap = self.kafka.bootstrap
        credentials = self.kafka_credentials_file or self.state_dir / "keys" / "kafka-credentials.json"
        applied = apply_network(self.kafka.admin_config(), credentials, Settings().retention_file)
        # The broker's epoch (decision 0026): the services hold until it is claimed.
        _provision(self.kafka_bootstrap, self.kafka.admin_settings())
        self.kafka_credentials = load_credentials(credentials)
        missing = [w for w in applied.warnings if "credentials file" in w]
        if missing:
            raise RuntimeError(f"Kafka principals whose passwords are unknown here: {missing}")

    def kafka_env(self, user: str) -> dict[str, str]:
        """PUNTE_KAFKA_* for a process connecting as ``user``; empty on Tansu."""
        if self.kafka is None:
            return {}
        return {"PUNTE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PUNTE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "PUNTE_KAFKA_USERNAME": user, "PUNTE_KAFKA_PASSWORD": self.kafka_credentials[user],
                "PUNTE_KAFKA_IDEMPOTENT_PRODUCER": "true", "PUNTE_KAFKA_REPLICATION_FACTOR": "3"}

    def admin_settings(self) -> Settings | None:
        """How a bench or test client reaches the broker with every right: the cluster's super
        user on Apache Kafka, a plain connection on the embedded broker; None for a broker
        given by the caller (the environment's PUNTE_KAFKA_*)."""
        if self.kafka is not None:
            return self.kafka.admin_settings()
        return self._client_settings()

    def _env(self, name: str) -> dict[str, str]:
        """A process's environment; ``name`` a process name: a replica is its service."""
        port = self.ports[name]
        name = service_of(name)
        assert self.kafka_bootstrap and self.database_url
        secrets = self.state.secrets()
        # Each process's Kafka identity is the stack's to give (kafka_env), never inherited
        # from whoever started the stack: an operator's admin credentials stay with them.
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("PUNTE_KAFKA_")}
        return {
            **inherited,
            "PUNTE_SERVICE": name, "PUNTE_HTTP_PORT": str(port),
            "PUNTE_KAFKA_BOOTSTRAP": self.kafka_bootstrap, "PUNTE_DATABASE_URL": self.database_url,
            "PUNTE_STATE_DIR": str(self.state_dir), "PUNTE_OIDC_ISSUER": self.url("identity"),
            "PUNTE_PSEUDONYM_KEY": secrets["pseudonym_key"],
            "PUNTE_IDENTITY_KEYS": secrets.get("identity_keys", ""),
            "PUNTE_DATA_KEYS": secrets.get("data_keys", {}).get(name, ""),
            "PUNTE_SMTP_HOST": "127.0.0.1", "PUNTE_SMTP_PORT": str(self.ports["mail"]),
            # The embedded mail server is on the same host: no TLS to offer.
            "PUNTE_SMTP_STARTTLS": "false",
            "PUNTE_RECIPIENTS_FILE": str(self.state.recipients_file), "PUNTE_SMS_FILE": str(self.state.sms_file),
            "PUNTE_REFERRAL_URL": self.url("referral"), "PUNTE_INBOX_URL": self.url("notification") + "/ui",
            "PYTHONPATH": str(ROOT),
            **(self.kafka_env(f"punte-{name}") if name in SERVICES else {}), **self.extra_env,
        }

    def start_process(self, name: str) -> None:
        module = {"identity": "punte.identity", "mail": "punte.mailbox"}.get(name, f"services.{service_of(name)}")
        arguments = (["--port", str(self.ports["mail"]), "--maildir", str(self.state.maildir)]
                     if name == "mail" else [])
        held = self.held_ports.get(name)
        listening = held.for_child() if held is not None else None
        env = self._env(name)
        if listening is not None:
            env[http_server.SOCKET_FD_VARIABLE] = str(listening.fileno())
        try:
            with open(self.state_dir / "logs" / f"{name}.log", "ab") as log:  # the child keeps its copy
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", module, *arguments], env=env, cwd=ROOT,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    pass_fds=(listening.fileno(),) if listening is not None else (),
                )
        finally:
            if listening is not None:  # the child's alone: it stops listening when the child ends
                listening.close()

    def start(self, timeout: float = 120) -> "Stack":
        self.start_infrastructure()
        # All at once: the services fetch the issuer's keys on their first request and reach
        # the mail server on their first e-mail, so neither has to be up before they start.
        for name in ("identity", *self.service_processes):
            if name not in self.held_ports:
                self.held_ports[name] = HeldPort()
                self.ports[name] = self.held_ports[name].port
        # The mail server (aiosmtpd binds its own) is started and waited for at once.
        self.ports.setdefault("mail", free_port())
        # Every replica at once, as an orchestrator starts them: on a first start they create
        # their database together (runtime.db.ensure_database takes the loser's collision for
        # the winner's database) and migrate one at a time (an advisory lock).
        for name in ("identity", "mail", *self.service_processes):
            self.start_process(name)
        for name in ("identity", "mail"):
            try:
                wait_for_port(self.ports[name], 30, self.processes[name])
            except RuntimeError:
                raise self._exited(name) from None
        self.wait_ready(timeout, self.service_processes)
        self.state.runtime_file.write_text(json.dumps({
            "services": {n: self.url(n) for n in ("identity", *SERVICES)},
            "smtp": f"127.0.0.1:{self.ports['mail']}",
            "kafka_bootstrap": self.kafka_bootstrap, "database_url": self.database_url,
            "broker": "kafka" if self.kafka is not None else "tansu",
            "pids": {n: p.pid for n, p in self.processes.items()},
        }, indent=1))
        (self.state_dir / SUPERVISION_FILE).unlink(missing_ok=True)  # a previous run's
        if self.supervise:
            self.supervisor = Supervisor(self._programs(), self.restart_policy, self._write_supervision).start()
        return self

    def _programs(self) -> dict[str, Program]:
        """Every process the stack started: the services, the issuer and the mail server are
        started again; the embedded PostgreSQL too (crash recovery runs at its start); the
        embedded broker too, empty, then rebuilt (``restart_broker``, decision 0026)."""
        logs = self.state_dir / "logs"
        programs = {name: Program(lambda n=name: self.processes.get(n), lambda n=name: self.start_process(n),
                                  logs / f"{name}.log")
                    for name in ("identity", "mail", *self.service_processes)}
        if self.postgres is not None:
            postgres = self.postgres
            programs["database"] = Program(lambda: postgres.process, lambda: postgres.restart(hard=True),
                                           postgres.log_file)
        if self.broker is not None:
            broker = self.broker
            programs["broker"] = Program(lambda: broker.process, self.restart_broker, logs / "broker.log")
        if self.kafka is not None and self._owns_kafka:
            # Apache Kafka keeps its log on disk: a node that exits is started again.
            cluster = self.kafka
            for node in cluster.nodes:
                programs[f"kafka-{node.node_id}"] = Program(
                    lambda n=node: n.process, lambda n=node: cluster.restart(n.node_id), node.log_file)
        return programs

    def _write_supervision(self, watches: dict[str, dict[str, object]]) -> None:
        path = self.state_dir / SUPERVISION_FILE
        path.with_suffix(".tmp").write_text(json.dumps(watches, indent=1))
        path.with_suffix(".tmp").replace(path)  # whole, so `punte status` never reads half of it

    @property
    def supervisor_lock(self) -> threading.RLock:
        return self.supervisor.lock if self.supervisor is not None else threading.RLock()

    def supervisor_adopt(self, name: str) -> None:
        if self.supervisor is not None:
            self.supervisor.adopt(name)

    def supervision(self) -> dict[str, dict[str, object]]:
        return self.supervisor.snapshot() if self.supervisor is not None else {}

    def _exited(self, name: str) -> RuntimeError:
        """Why the stack cannot start: ``name`` exited, with its log's last lines in the error
        itself (where the log is not kept, as in CI, the path alone says nothing)."""
        log_file = self.state_dir / "logs" / f"{name}.log"
        tail = "\n  ".join(last_lines(log_file, count=8, width=600))
        return RuntimeError(f"{name} exited with {self.processes[name].returncode}; see {log_file}; "
                            f"its last lines:\n  {tail}")

    def wait_ready(self, timeout: float, names: Iterable[str] | None = None) -> None:
        """Waits until every service process (or those ``names``) answers ready."""
        deadline = time.monotonic() + timeout
        pending = set(self.service_processes if names is None else names)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                process = self.processes[name]
                if process.poll() is not None:
                    raise self._exited(name)
                try:
                    if httpx.get(f"{self.url(name)}/health/ready", timeout=2).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")

    def stop_process(self, name: str, grace: float = 15) -> None:
        self.stop_processes([name], grace)

    def stop_processes(self, names: Iterable[str], grace: float = 15) -> None:
        """``names`` stopped together (``terminate_together``): their graceful shutdowns
        (consumers leaving their groups, the relay's last publish) run side by side."""
        terminate_together([self.processes.pop(name, None) for name in names], grace)

    def stop(self) -> None:
        if self.supervisor is not None:  # first, or it would start again what is stopped
            self.supervisor.stop()
        # The services together, then the identity provider and the mail server, which they
        # may still call while they stop.
        self.stop_processes(self.service_processes)
        self.stop_processes(["mail", "identity"])
        if self.broker:
            self.broker.stop()
        if self.kafka is not None and self._owns_kafka:
            self.kafka.stop()
        if self.postgres:
            self.postgres.stop()
        for held in self.held_ports.values():
            held.close()
        self.held_ports.clear()
