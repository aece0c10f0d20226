"""Apache Kafka as processes: a pinned release fetched from Maven Central (deploy/kafka/pom.xml)
into .cache/kafka-<version>/, and a KRaft cluster of combined broker+controller nodes on
127.0.0.1, with SASL/SCRAM-SHA-512 for clients, the StandardAuthorizer and no access
without an ACL (decision 0027). For the tests and `punte up --broker kafka`; the embedded
default stays Tansu, which needs no Java.

    python -m punte.apache_kafka fetch   # idempotent; run by `make install`
"""
from __future__ import annotations

import base64
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from punte.embedded import free_port, terminate_together, wait_for_port
from runtime.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "deploy" / "kafka" / "pom.xml"
CACHE = ROOT / ".cache"
# Written last into the cache folder: a folder without it is a fetch that did not finish.
COMPLETE = ".complete"
SCRAM = "SCRAM-SHA-512"


def kafka_version(pom: Path = POM) -> str:
    """The pinned Kafka version: the pom's ``kafka.version`` property."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    assert node is not None and node.text, f"no kafka.version in {pom}"
    return node.text.strip()


def libs_dir(version: str | None = None) -> Path:
    """Where the fetched jars of ``version`` (default: the pinned one) are."""
    return CACHE / f"kafka-{version or kafka_version()}"


def available() -> str | None:
    """None when a cluster can start here, else why not (for a test's skip)."""
    if shutil.which("java") is None:
        return "no java on PATH"
    if not (libs_dir() / COMPLETE).exists():
        return f"Kafka {kafka_version()} not fetched: python -m punte.apache_kafka fetch"
    return None


def fetch(pom: Path = POM, quiet: bool = True) -> Path:
    """Copy the broker's jars with their dependencies into .cache/kafka-<version>/ with
    Maven, unless they are already there. Into a temporary folder first, renamed when
    complete, so an interrupted fetch leaves nothing that looks fetched."""
    target = libs_dir(kafka_version(pom))
    if (target / COMPLETE).exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is needed to fetch Apache Kafka")
    CACHE.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=CACHE))
    try:
        subprocess.run([mvn, *(["-q"] if quiet else []), "-B", "-Dstyle.color=never", "-f", str(pom),
                        "dependency:copy-dependencies",
                        f"-DoutputDirectory={staging}", "-DincludeScope=runtime"], check=True)
        (staging / COMPLETE).write_text(kafka_version(pom) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _cluster_id() -> str:
    """A Kafka Uuid as the storage tool writes it: 16 random bytes, URL-safe base64 unpadded,
    never starting with "-" (as Kafka's own Uuid.randomUuid: a command line would read it
    as an option)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _jaas(module: str, user: str, password: str, **extra: str) -> str:
    options = " ".join(f'{k}="{v}"' for k, v in {"username": user, "password": password, **extra}.items())
    return f"{module} required {options};"


LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
# Denials are INFO in kafka.authorizer.logger; grants at DEBUG stay out.
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = info
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.controller.name = org.apache.kafka.controller
logger.controller.level = warn
"""


@dataclass
class KafkaNode:
    node_id: int
    port: int  # the clients' (and brokers') SASL_PLAINTEXT SCRAM listener
    controller_port: int
    folder: Path
    process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"


@dataclass
class KafkaCluster:
    """``size`` combined broker+controller nodes (a quorum of ``size`` voters) under
    ``root``: each node's properties, data and log in root/node-<id>/. ``admin`` is the
    super user, with a SCRAM credential written at format time; every other principal
    needs its credential and ACLs from `punte kafka apply` (punte.kafka_admin)."""

    root: Path
    size: int = 3
    heap: str = "384m"
    admin_user: str = "admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    nodes: list[KafkaNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        if not self.nodes:
            self.nodes = [KafkaNode(i, free_port(), free_port(), self.root / f"node-{i}")
                          for i in range(1, self.size + 1)]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def admin_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) settings of the super user."""
        return {"bootstrap.servers": self.bootstrap, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": SCRAM, "sasl.username": self.admin_user, "sasl.password": self.admin_password}

    def admin_settings(self) -> Settings:
        """The super user's settings for the runtime's (aiokafka) clients."""
        return Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=SCRAM,
                        kafka_username=self.admin_user, kafka_password=self.admin_password)

    def properties(self, node: KafkaNode) -> dict[str, str]:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"CLIENT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"CLIENT://127.0.0.1:{node.port}",
            "listener.security.protocol.map": "CLIENT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name": "CLIENT",
            "controller.listener.names": "CONTROLLER",
            # Clients and brokers: SCRAM, credentials in the cluster's metadata. The
            # controllers cannot read SCRAM credentials before the metadata they hold, so
            # their own listener takes PLAIN with the admin's password in its JAAS line.
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.client.scram-sha-512.sasl.jaas.config": _jaas(
                "org.apache.kafka.common.security.scram.ScramLoginModule", self.admin_user, self.admin_password),
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": _jaas(
                "org.apache.kafka.common.security.plain.PlainLoginModule", self.admin_user, self.admin_password,
                **{f"user_{self.admin_user}": self.admin_password}),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{self.admin_user}",
            "allow.everyone.if.no.acl.found": "false",
            "auto.create.topics.enable": "false",
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.dirs": str(node.folder / "data"),
            # Small: three JVMs share two cores with the tests.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "log.cleaner.threads": "1",
        }

    def _java(self, node: KafkaNode, main: str, *arguments: str) -> list[str]:
        java = shutil.which("java")
        assert java is not None, "java is not on PATH"
        return [java, f"-Xmx{self.heap}", "-Xms64m", "-XX:+UseSerialGC", "-Xshare:auto",
                f"-Dlog4j2.configurationFile={node.folder / 'log4j2.properties'}",
                "-Djava.awt.headless=true", "-cp", str(libs_dir() / "*"), main, *arguments]

    def format(self) -> None:
        """Write each node's configuration and format its storage (once; a node already
        formatted keeps its data), with the admin's SCRAM credential."""
        cluster_id = _cluster_id()
        pending: list[tuple[KafkaNode, subprocess.Popen]] = []
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            (node.folder / "log4j2.properties").write_text(LOG4J2)
            config = node.folder / "server.properties"
            config.write_text("".join(f"{k}={v}\n" for k, v in self.properties(node).items()))
            config.chmod(0o600)  # it holds the admin's password
            if (node.folder / "data" / "meta.properties").exists():
                continue
            scram = f"{SCRAM}=[name={self.admin_user},password={self.admin_password}]"
            pending.append((node, subprocess.Popen(
                self._java(node, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config),
                           "--add-scram", scram, "--ignore-formatted"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for node, process in pending:
            output, _ = process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"formatting node {node.node_id} failed: {output.decode(errors='replace')}")

    def _spawn(self, node: KafkaNode) -> None:
        with open(node.log_file, "ab") as log:
            node.process = subprocess.Popen(
                self._java(node, "kafka.Kafka", str(node.folder / "server.properties")),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout: float = 120) -> "KafkaCluster":
        """Format (first time), start every node, wait until every broker answers."""
        self.format()
        try:
            # All at once: a node opens its client listener only once the quorum has a
            # leader, which takes a majority of the voters.
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self._wait_listening(node, timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        """Until each broker, asked on its own address, names all the cluster's brokers.
        A node that exits meanwhile fails at once; a timeout says what each node answered
        last and the warnings and errors of each node's log, so that a start that failed
        far away (CI) can be read from its output."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        expected = {node.node_id for node in self.nodes}
        for node in self.nodes:
            # Quiet: its connection errors while nodes start are expected, and it outlives them.
            admin = AdminClient({**self.admin_config(), "bootstrap.servers": node.address, "log_level": 0})
            last = "nothing yet"
            while True:
                self._fail_if_exited()
                try:
                    brokers = admin.describe_cluster(request_timeout=5).result(timeout=10).nodes
                    named = {b.id for b in brokers}
                    if named == expected:
                        break
                    last = f"names brokers {sorted(named)}"
                except Exception as error:  # not up yet: connection refused, authentication not ready
                    last = f"{type(error).__name__}: {error}"
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Kafka node {node.node_id} not ready after {timeout}s: it {last}, "
                                       f"expected {sorted(expected)}\n{self.log_digest()}")
                time.sleep(0.5)

    def _wait_listening(self, node: KafkaNode, timeout: float) -> None:
        """Until ``node`` listens; any node that exits meanwhile fails the wait at once (a
        node opens its port only once a majority of the voters has elected a leader)."""
        deadline = time.monotonic() + timeout
        while True:
            self._fail_if_exited()
            try:
                wait_for_port(node.port, min(1.0, max(0.1, deadline - time.monotonic())), node.process)
                return
            except RuntimeError:  # it exited: say which node, and why
                self._fail_if_exited()
                raise
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def _fail_if_exited(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"Kafka node {node.node_id} exited with {node.process.returncode}\n"
                                   f"{self.log_digest(first=node)}")

    def log_digest(self, lines: int = 12, first: KafkaNode | None = None) -> str:
        """The last ``lines`` warnings and errors of each node's log (where a start went wrong),
        ``first``'s (the node that failed) first."""
        digest = []
        for node in sorted(self.nodes, key=lambda n: n is not first):
            try:
                text = node.log_file.read_text(errors="replace").splitlines()
            except OSError as error:
                digest.append(f"node {node.node_id}: no log ({error})")
                continue
            notable = [line[:300] for line in text if "] WARN " in line or "] ERROR " in line or "Exception" in line]
            digest.append(f"node {node.node_id} ({node.log_file}), last of {len(notable)} warnings/errors:")
            digest.extend(f"  {line}" for line in notable[-lines:])
        return "\n".join(digest)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (its whole process group), as a crash would."""
        node = self.node(node_id)
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait()

    def restart(self, node_id: int, timeout: float = 120) -> None:
        """Start a killed (or stopped) node again on its ports and data; wait until the
        cluster is whole again."""
        node = self.node(node_id)
        self.kill(node_id)
        self._spawn(node)
        self._wait_listening(node, timeout)
        self.wait_ready(timeout)

    def pause(self, node_id: int) -> int:
        """SIGSTOP one node: it holds its connections and answers nothing, as a hung
        broker, until ``resume``; the controllers fence it after the broker session
        timeout. Returns the pid paused."""
        node = self.node(node_id)
        assert node.process is not None and node.process.poll() is None, f"node {node_id} is not running"
        os.killpg(node.process.pid, signal.SIGSTOP)
        return node.process.pid

    def resume(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.process is not None and node.process.poll() is None:
            os.killpg(node.process.pid, signal.SIGCONT)

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def _metadata(self, timeout: float = 30):  # confluent_kafka ClusterMetadata
        from confluent_kafka.admin import AdminClient

        return AdminClient({**self.admin_config(), "log_level": 0}).list_topics(timeout=timeout)

    def leader(self, topic: str, partition: int = 0) -> int | None:
        """The node leading ``topic``'s ``partition`` now (None: none, or unknown)."""
        found = self._metadata().topics.get(topic)
        led = found.partitions.get(partition) if found is not None else None
        return led.leader if led is not None and led.leader >= 0 else None

    def under_replicated(self) -> int:
        """Partitions with a replica out of sync: 0 once a node that came back has caught up."""
        return sum(len(p.isrs) < len(p.replicas)
                   for t in self._metadata().topics.values() for p in t.partitions.values())

    def stop(self, grace: float = 30) -> None:
        """SIGTERM every node (a controlled shutdown), SIGKILL what is left after ``grace``."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                os.killpg(node.process.pid, signal.SIGCONT)  # a paused node cannot act on SIGTERM
        terminate_together([node.process for node in self.nodes], grace)
        for node in self.nodes:
            node.process = None


def main(argv: list[str]) -> int:
    if argv[:1] != ["fetch"]:
        print(__doc__)
        return 2
    if shutil.which("mvn") is None or shutil.which("java") is None:
        # Not an error: the Kafka tests skip and the embedded default needs no Java.
        print("Apache Kafka not fetched: Java and Maven are needed (the Kafka tests will skip)")
        return 0
    started = time.monotonic()
    target = fetch()
    print(f"Apache Kafka {kafka_version()} in {target} ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
