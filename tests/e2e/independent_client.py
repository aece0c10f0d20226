"""An institution's own system, written from docs/connecting.md alone, with the libraries an
outside team would pick: confluent-kafka, cryptography, joserfc and httpx. It imports
nothing of Punte (runtime/, services/, punte/, contracts/): tests/unit/test_independent_client_imports.py
keeps it so. tests/e2e/test_independent_client.py runs it against a network."""
from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Producer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jwe
from joserfc.jwk import ECKey

REPORT_V3 = "ro.punte.report.submitted.v3"
OUTCOME = "ro.punte.outcome.v1"
SIGNED = ("ce_id", "ce_source", "ce_type", "ce_time", "ce_subject")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_input(headers: dict[str, str], body: bytes) -> bytes:
    """v2: "punte-sig-v2\\n", then each attribute and the body as a 4-byte big-endian length
    and the bytes."""
    fields = [headers.get(name, "").encode("utf-8") for name in SIGNED] + [body]
    return b"punte-sig-v2\n" + b"".join(struct.pack(">I", len(f)) + f for f in fields)


def load_key_file(path: str) -> tuple[str, Ed25519PrivateKey]:
    with open(path, encoding="utf-8") as file:
        stored = json.load(file)
    key = load_pem_private_key(stored["pem"].encode("ascii"), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 key")
    return stored["key_id"], key


def verify_delivery(jwks: dict[str, Any], headers: dict[str, str], body: bytes) -> bool:
    """Signed by one of the network's keys (the JWK whose kid is ce_keyid), v2."""
    jwk = next((k for k in jwks["keys"] if k.get("kid") == headers.get("ce_keyid")), None)
    if (jwk is None or (jwk.get("kty"), jwk.get("crv")) != ("OKP", "Ed25519") or headers.get("ce_sigversion") != "2"
            or not headers.get("ce_source", "").startswith("/punte/")):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(unb64url(jwk["x"])).verify(
            unb64url(headers.get("ce_signature", "")), signing_input(headers, body))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Sent:
    event_id: str
    headers: dict[str, str]
    body: bytes
    partition: int = -1
    offset: int = -1


@dataclass
class Institution:
    """One institution's system: its id, key, and where the network answers."""

    id: str
    key_id: str
    key: Ed25519PrivateKey
    bootstrap: str
    intake_url: str
    identity_url: str
    kafka: dict[str, str] | None = None  # TLS and SASL settings in production

    @property
    def source(self) -> str:
        return f"/institutions/{self.id}"

    # --- building a report --------------------------------------------------------------

    def intake_keys(self) -> dict[str, Any]:
        answer = httpx.get(f"{self.intake_url}/.well-known/jwks.json", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def sealed_report(self, event_id: str, cnp: str, uat_siruta: int = 21891) -> dict[str, Any]:
        """A report v3: where the child lives and the risk in clear, the rest sealed to intake."""
        jwks = self.intake_keys()
        jwk = next(k for k in jwks["keys"] if k["use"] == "enc" and k["alg"] == "ECDH-ES+A256KW")
        plaintext = {"report": {"id": event_id, "institution": self.id}, "child": {"cnp": cnp},
                     "description": "Absențe repetate de la școală (exemplu sintetic)."}
        sealed = jwe.encrypt_compact({"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": jwk["kid"]},
                                     json.dumps(plaintext, ensure_ascii=False).encode("utf-8"), ECKey.import_key(jwk))
        return {"reporter": {"institution": self.id, "role": "school-counsellor"}, "channel": "school",
                "child": {"uat_siruta": uat_siruta, "county": "BC"},
                "risks": [{"category": "school_absenteeism"}], "sealed": sealed}

    def sign(self, event_type: str, body: bytes, event_id: str | None = None) -> Sent:
        headers = {
            "ce_specversion": "1.0", "ce_id": event_id or str(uuid.uuid4()), "ce_source": self.source,
            "ce_type": event_type,
            "ce_time": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "content-type": "application/json",
        }
        headers |= {"ce_keyid": self.key_id, "ce_sigversion": "2",
                    "ce_signature": b64url(self.key.sign(signing_input(headers, body)))}
        return Sent(headers["ce_id"], headers, body)

    def report(self, cnp: str) -> Sent:
        event_id = str(uuid.uuid4())
        body = json.dumps(self.sealed_report(event_id, cnp), ensure_ascii=False).encode("utf-8")
        return self.sign(REPORT_V3, body, event_id)

    # --- Kafka ------------------------------------------------------------------------------

    def _config(self) -> dict[str, str]:
        return {"bootstrap.servers": self.bootstrap, **(self.kafka or {})}

    def send(self, message: Sent) -> Sent:
        """To the ingress topic, keyed by ce_id; the record's position comes back."""
        delivered: list[Any] = []
        producer = Producer(self._config() | {"acks": "all"})
        producer.produce(f"punte.ingress.{self.id}", value=message.body, key=message.event_id.encode("utf-8"),
                         headers=[(k, v.encode("utf-8")) for k, v in message.headers.items()],
                         on_delivery=lambda error, record: delivered.append((error, record)))
        if producer.flush(30) != 0 or not delivered or delivered[0][0] is not None:
            raise RuntimeError(f"not delivered to the broker: {delivered}")
        record = delivered[0][1]
        return Sent(message.event_id, message.headers, message.body, record.partition(), record.offset())

    def outcomes(self, event_ids: set[str], jwks: dict[str, Any], group: str, timeout: float = 90) -> dict[str, dict]:
        """The network's answers to ``event_ids`` from the delivery topic; every delivery read
        on the way must carry the network's signature."""
        consumer = Consumer(self._config() | {"group.id": f"{self.id}.{group}", "auto.offset.reset": "earliest",
                                              "enable.auto.commit": False, "session.timeout.ms": 6000})
        consumer.subscribe([f"punte.delivery.{self.id}"])
        found: dict[str, dict] = {}
        deadline = time.monotonic() + timeout
        try:
            while not event_ids <= found.keys() and time.monotonic() < deadline:
                record = consumer.poll(1.0)
                if record is None:
                    continue
                if record.error():
                    if record.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise RuntimeError(str(record.error()))
                headers = {k: (v or b"").decode("utf-8") for k, v in record.headers() or []}
                if not verify_delivery(jwks, headers, record.value()):
                    raise ValueError(f"delivery at offset {record.offset()} is not signed by the network")
                consumer.commit(record, asynchronous=False)
                if headers["ce_type"] == OUTCOME:
                    data = json.loads(record.value())
                    if data["subject_id"] in event_ids:
                        found[data["subject_id"]] = data
        finally:
            consumer.close()
        return found

    # --- HTTP ---------------------------------------------------------------------------------

    def token(self, secret: str, method: str = "basic") -> str:
        """OAuth 2.0 client credentials as client `sys.<id>`: HTTP Basic or the form."""
        discovery = httpx.get(f"{self.identity_url}/.well-known/openid-configuration", timeout=10).json()
        client_id = f"sys.{self.id}"
        if method == "basic":
            answer = httpx.post(discovery["token_endpoint"], data={"grant_type": "client_credentials"},
                                auth=(client_id, secret), timeout=10)
        else:
            answer = httpx.post(discovery["token_endpoint"], timeout=10, data={
                "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
        answer.raise_for_status()
        return answer.json()["access_token"]

    def post_binary(self, token: str, message: Sent, wait: float = 10) -> httpx.Response:
        headers = {f"ce-{k.removeprefix('ce_')}": v for k, v in message.headers.items() if k.startswith("ce_")}
        return httpx.post(f"{self.intake_url}/v1/events", params={"wait": wait}, content=message.body, timeout=60,
                          headers=headers | {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    def post_structured(self, token: str, message: Sent, as_data: bool = False, wait: float = 10) -> httpx.Response:
        """Structured mode: data_base64 (the signed bytes), or ``as_data``: the report as
        `data`, signed over its compact serialisation."""
        envelope: dict[str, Any] = {k.removeprefix("ce_"): v for k, v in message.headers.items()
                                    if k.startswith("ce_")}
        envelope["datacontenttype"] = "application/json"
        if as_data:
            envelope["data"] = json.loads(message.body)
        else:
            envelope["data_base64"] = base64.b64encode(message.body).decode("ascii")
        return httpx.post(f"{self.intake_url}/v1/events", params={"wait": wait}, timeout=60,
                          content=json.dumps(envelope, ensure_ascii=False).encode("utf-8"),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/cloudevents+json"})

    def compact(self, event_type: str, data: dict[str, Any], event_id: str | None = None) -> Sent:
        """An event whose body is `data` as the structured mode serialises it again: compact,
        members in order, non-ASCII as itself."""
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return self.sign(event_type, body, event_id)

    def poll(self, token: str, location: str, timeout: float = 60) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            answer = httpx.get(self.intake_url + location, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if answer.status_code != 404 or time.monotonic() > deadline:
                return answer
            time.sleep(0.5)
