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
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from contracts.reference import institutions, retention, topic_partitions
from punte.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port
from punte.state import State
from runtime.kafka import ensure_topics, topic_configs
from runtime.settings import Settings

SERVICES = ("intake", "referral", "notification", "audit")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Stack:
    state_dir: Path
    kafka_bootstrap: str | None = None
    database_url: str | None = None
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

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
        if self.kafka_bootstrap is None:
            self.broker = EmbeddedBroker(log_file=self.state_dir / "logs" / "broker.log").start()
            self.kafka_bootstrap = self.broker.bootstrap
        plan = topic_partitions(institutions())
        # Ingress topics keep messages for retention.yaml's ingress_days only (issue #11).
        days = retention(Settings().retention_file).ingress_days
        asyncio.run(ensure_topics(self.kafka_bootstrap, plan, configs=topic_configs(plan, days)))

    def _env(self, name: str) -> dict[str, str]:
        assert self.kafka_bootstrap and self.database_url
        secrets = self.state.secrets()
        return {
            **os.environ,
            "PUNTE_SERVICE": name, "PUNTE_HTTP_PORT": str(self.ports[name]),
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
            "PYTHONPATH": str(ROOT), **self.extra_env,
        }

    def start_process(self, name: str) -> None:
        module = {"identity": "punte.identity", "mail": "punte.mailbox"}.get(name, f"services.{name}")
        arguments = (["--port", str(self.ports["mail"]), "--maildir", str(self.state.maildir)]
                     if name == "mail" else [])
        with open(self.state_dir / "logs" / f"{name}.log", "ab") as log:  # the child keeps its copy
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", module, *arguments], env=self._env(name), cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def start(self, timeout: float = 120) -> "Stack":
        self.start_infrastructure()
        # All at once: the services fetch the issuer's keys on their first request and reach
        # the mail server on their first e-mail, so neither has to be up before they start.
        for name in ("identity", "mail", *SERVICES):
            self.ports.setdefault(name, free_port())
        for name in ("identity", "mail", *SERVICES):
            self.start_process(name)
        for name in ("identity", "mail"):
            wait_for_port(self.ports[name], 30, self.processes[name])
        self.wait_ready(timeout)
        self.state.runtime_file.write_text(json.dumps({
            "services": {n: self.url(n) for n in ("identity", *SERVICES)},
            "smtp": f"127.0.0.1:{self.ports['mail']}",
            "kafka_bootstrap": self.kafka_bootstrap, "database_url": self.database_url,
            "pids": {n: p.pid for n, p in self.processes.items()},
        }, indent=1))
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(SERVICES)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                process = self.processes[name]
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see "
                                       f"{self.state_dir / 'logs' / (name + '.log')}")
                try:
                    if httpx.get(f"{self.url(name)}/health/ready", timeout=2).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        if pending:
            raise TimeoutError(f"not ready after {timeout}s: {', '.join(sorted(pending))}")

    def stop_process(self, name: str, grace: float = 15) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for name in (*reversed(SERVICES), "mail", "identity"):
            self.stop_process(name)
        if self.broker:
            self.broker.stop()
        if self.postgres:
            self.postgres.stop()
