"""Kafka security from the environment (issue #13): every client runtime.kafka makes
(producer, consumer, admin, the partition reader) authenticates as configured, producers
wait for every in-sync replica, and a half-configured SASL refuses to start."""
from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from runtime.kafka import KafkaConfigError, client_options, make_admin, make_consumer, make_producer
from runtime.settings import Settings

SCRAM_ENV = {"PUNTE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "PUNTE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
             "PUNTE_KAFKA_USERNAME": "punte-intake", "PUNTE_KAFKA_PASSWORD": "s3cret-pw"}


def _client_of(client: Any) -> Any:
    """aiokafka's connection manager inside a producer, consumer or admin client."""
    return getattr(client, "client", None) or client._client


@pytest.fixture
def scram_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SCRAM_ENV.items():
        monkeypatch.setenv(name, value)


async def test_without_settings_clients_speak_plaintext_as_before(monkeypatch: pytest.MonkeyPatch):
    for name in SCRAM_ENV:
        monkeypatch.delenv(name, raising=False)
    producer = make_producer("127.0.0.1:1")
    assert _client_of(producer)._security_protocol == "PLAINTEXT"
    assert _client_of(make_admin("127.0.0.1:1"))._security_protocol == "PLAINTEXT"


async def test_every_client_authenticates_as_the_environment_says(scram_env: None):
    for client in (make_producer("127.0.0.1:1"), make_consumer("127.0.0.1:1", "punte-intake", 10)):
        inner = _client_of(client)
        assert inner._security_protocol == "SASL_PLAINTEXT"
        assert inner._sasl_mechanism == "SCRAM-SHA-512"
        assert inner._sasl_plain_username == "punte-intake" and inner._sasl_plain_password == "s3cret-pw"
    admin = _client_of(make_admin("127.0.0.1:1"))
    assert admin._sasl_mechanism == "SCRAM-SHA-512" and admin._sasl_plain_username == "punte-intake"


async def test_producers_wait_for_all_replicas_and_are_idempotent_when_the_broker_offers_it(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PUNTE_KAFKA_IDEMPOTENT_PRODUCER", raising=False)
    plain = make_producer("127.0.0.1:1")
    assert plain._txn_manager is None  # Tansu, the embedded default, refuses InitProducerId
    monkeypatch.setenv("PUNTE_KAFKA_IDEMPOTENT_PRODUCER", "true")
    idempotent = make_producer("127.0.0.1:1")
    assert idempotent._txn_manager is not None
    for producer in (plain, idempotent):
        assert producer._sender._acks == -1  # acks=all


@pytest.mark.parametrize("missing", ["PUNTE_KAFKA_USERNAME", "PUNTE_KAFKA_PASSWORD"])
async def test_a_sasl_mechanism_without_credentials_refuses_to_start(
        scram_env: None, monkeypatch: pytest.MonkeyPatch, missing: str):
    monkeypatch.delenv(missing)
    for make in (lambda: make_producer("127.0.0.1:1"), lambda: make_consumer("127.0.0.1:1", "g", 1)):
        with pytest.raises(KafkaConfigError, match=missing):
            make()


async def test_credentials_are_never_sent_in_the_clear_by_accident(
        scram_env: None, monkeypatch: pytest.MonkeyPatch):
    # A mechanism with a protocol that carries no SASL: the credentials would be ignored and
    # the client would connect unauthenticated. Refused instead.
    monkeypatch.setenv("PUNTE_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    with pytest.raises(KafkaConfigError, match="PUNTE_KAFKA_SECURITY_PROTOCOL"):
        client_options(Settings())
    # ... and a SASL protocol without a mechanism.
    monkeypatch.setenv("PUNTE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("PUNTE_KAFKA_SASL_MECHANISM")
    with pytest.raises(KafkaConfigError, match="PUNTE_KAFKA_SASL_MECHANISM"):
        client_options(Settings())


def test_a_tls_ca_file_makes_a_verifying_context(scram_env: None, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path):
    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("PUNTE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PUNTE_KAFKA_CA_FILE", str(ca))
    context = client_options(Settings())["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    monkeypatch.setenv("PUNTE_KAFKA_CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(KafkaConfigError, match="PUNTE_KAFKA_CA_FILE"):
        client_options(Settings())
