"""How an institution checks what the network delivers (issue #16): every service publishes
the network's public signing keys as a JWKS, and a delivery verifies with nothing but the
JWK named by its ce_keyid and the `cryptography` package, as docs/contracts.md shows."""
from __future__ import annotations

import importlib
import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from cryptography.exceptions import InvalidSignature

from punte.state import State
from runtime.cloudevents import CloudEvent
from runtime.service import Runtime, create_app, load_network_key, load_network_keys
from runtime.settings import Settings
from runtime.signing import NETWORK, Keyring, PublicKey, SigningKey

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["intake", "referral", "notification", "audit"]
PATH = "/.well-known/punte-network-keys.json"


def documented_verify():
    """verify_delivery as docs/contracts.md gives it to receivers (the lines before it
    fetches the JWKS), run as written: `cryptography` only, nothing of Punte's."""
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text[text.index("### The network's public keys"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    code = code[:code.index("jwks = httpx.get")]
    scope: dict = {}
    exec(compile(code, "docs/contracts.md", "exec"), scope)  # noqa: S102 - our own docs
    return scope["verify_delivery"]


def verify_as_a_receiver(jwks: dict, headers: list[tuple[str, bytes]], body: bytes) -> None:
    """Pick the JWK whose kid is the ce_keyid and verify, as the docs say (raises if not)."""
    h = {k: v.decode() for k, v in headers}
    assert h["ce_sigversion"] == "2"
    [jwk] = [k for k in jwks["keys"] if k["kid"] == h["ce_keyid"]]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    documented_verify()(jwks, h, body)
    with pytest.raises(InvalidSignature):
        documented_verify()(jwks, h, body + b" ")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[SigningKey, SigningKey, Settings]:
    current, earlier = SigningKey.generate("punte-network-2"), SigningKey.generate("punte-network-1")
    current.save(tmp_path / "network.key")
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    (tmp_path / "network-keyring.json").write_text(
        Keyring([PublicKey(earlier.key_id, NETWORK, earlier.public_raw(), since, None)]).to_json())
    settings = Settings(network_key_file=tmp_path / "network.key",
                        network_keyring_file=tmp_path / "network-keyring.json")
    return current, earlier, settings


def serving(service: str, settings: Settings):
    """The service's app with its network keys loaded as start-up loads them (no database
    or broker: the route reads nothing else)."""
    app = create_app(importlib.import_module(f"services.{service}.bootstrap").SPEC, settings)
    key = load_network_key(settings)
    app.state.runtime = Runtime(
        name=service, settings=settings, engine=None, sessions=None, producer=None, relay=None,  # type: ignore[arg-type]
        verifier=None, network_key=key, keyring=Keyring([]), network_keys=load_network_keys(settings, key))  # type: ignore[arg-type]
    return app


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_publishes_the_network_keys_current_first(service, keys):
    current, earlier, settings = keys
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=serving(service, settings)),
                                 base_url="http://service.test") as client:
        answer = await client.get(PATH)  # no token: public, like any JWKS
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "public, max-age=300"
    jwks = answer.json()
    assert [k["kid"] for k in jwks["keys"]] == [current.key_id, earlier.key_id]
    assert not any("d" in k for k in jwks["keys"]), "public halves only"
    # A delivery the network signs (with the current key, or the earlier one during a
    # rotation) verifies with the JWKS alone.
    for key in (current, earlier):
        outcome = key.sign(CloudEvent.new("ro.punte.outcome.v1", "/punte/intake",
                                          {"subject_id": "r-1", "status": "accepted", "note": "ăîșț"}))
        verify_as_a_receiver(jwks, outcome.headers(), outcome.body())


def test_the_embedded_state_holds_the_network_keys_as_a_jwks(tmp_path):
    state = State(tmp_path / "state").prepare()
    jwks = json.loads((tmp_path / "state" / "keys" / "network.pub.json").read_text())
    network = SigningKey.load(tmp_path / "state" / "keys" / "network.key")
    assert [k["kid"] for k in jwks["keys"]] == [network.key_id]
    outcome = network.sign(CloudEvent.new("ro.punte.outcome.v1", "/punte/intake", {"status": "accepted"}))
    verify_as_a_receiver(jwks, outcome.headers(), outcome.body())
    assert state.root == tmp_path / "state"
