"""The service process shape: what a service refuses to start without, and what its
runtime endpoints let through."""
from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from punte.state import State
from runtime.service import ServiceSpec, create_app, load_network_key
from runtime.settings import Settings
from runtime.signing import SigningKey

# Nothing listens there: a service that got as far as its database would fail differently.
NO_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:1/postgres"


def spec() -> ServiceSpec:
    async def stats(session) -> dict:
        return {}
    return ServiceSpec(name="intake", migrations=Path("nowhere"), consumers=lambda rt: [],
                       routers=[], stats=stats)


async def start(app: FastAPI) -> None:
    async with app.router.lifespan_context(app):
        pass


async def test_a_service_refuses_to_start_without_the_network_key(tmp_path):
    app = create_app(spec(), Settings(state_dir=tmp_path, database_url=NO_SERVER))
    with pytest.raises(RuntimeError) as refused:
        await start(app)
    message = str(refused.value)
    assert "PUNTE_NETWORK_KEY_FILE" in message and str(tmp_path / "keys" / "network.key") in message


async def test_a_configured_network_key_file_that_is_missing_is_named(tmp_path):
    missing = tmp_path / "elsewhere" / "network.key"
    with pytest.raises(RuntimeError) as refused:
        load_network_key(Settings(state_dir=tmp_path, network_key_file=missing))
    assert str(missing) in str(refused.value)


def test_the_state_folder_of_the_embedded_network_holds_the_network_key(tmp_path):
    state = State(tmp_path / "state").prepare()
    settings = Settings(state_dir=state.root)
    assert settings.resolved_network_key_file() == state.network_key_file
    key = load_network_key(settings)
    assert key.public_raw() == SigningKey.load(state.network_key_file).public_raw()


def test_earlier_network_keys_are_trusted_from_the_network_keyring_file_during_a_rotation(tmp_path):
    from datetime import datetime, timezone

    from runtime.cloudevents import CloudEvent
    from runtime.inbox import Message, check_network_signature
    from runtime.service import load_network_keys
    from runtime.signing import NETWORK, Keyring, PublicKey, SignatureError

    current, earlier, school = (SigningKey.generate(k) for k in ("punte-network-2", "punte-network-1", "isj-bc-1"))
    since = datetime(2026, 1, 1, tzinfo=timezone.utc)
    (tmp_path / "network-keyring.json").write_text(Keyring([
        PublicKey(earlier.key_id, NETWORK, earlier.public_raw(), since, None),
        PublicKey(school.key_id, "isj-bc", school.public_raw(), since, None)]).to_json())
    keys = load_network_keys(Settings(network_keyring_file=tmp_path / "network-keyring.json"), current)

    def on_cases(key: SigningKey) -> Message:
        event = key.sign(CloudEvent.new("ro.punte.case.opened.v1", "/punte/intake", {}, subject="case-1"))
        return Message("punte.cases", 0, 0, None, event.body(), tuple(event.headers()), 0)

    check_network_signature(on_cases(current), keys)
    check_network_signature(on_cases(earlier), keys)
    with pytest.raises(SignatureError) as refused:
        check_network_signature(on_cases(school), keys)  # an institution's key is not the network's
    assert refused.value.code == "UNKNOWN_KEY"


# --- the runtime's own endpoints --------------------------------------------------------

class _Result:
    def one(self) -> object:
        from types import SimpleNamespace
        return SimpleNamespace(pending=0, parked=0, waiting=0, discarded=0)

    def all(self) -> list:
        return []


class _Session:
    async def scalar(self, statement) -> int:
        return 0

    async def execute(self, statement) -> _Result:
        return _Result()

    async def __aenter__(self) -> "_Session":
        return self

    async def __aexit__(self, *exc) -> None:
        return None


def served(verifier) -> FastAPI:
    """A service's app with a runtime whose database answers 0 to everything."""
    from types import SimpleNamespace

    app = create_app(spec(), Settings())
    app.state.runtime = SimpleNamespace(verifier=verifier, sessions=_Session, consumers=[],
                                        relay=SimpleNamespace(published=0), started=True, epochs=None)
    return app


async def test_stats_are_for_the_operator_and_the_api_document_for_those_signed_in():
    import httpx

    from runtime.tokens import TokenIssuer, TokenVerifier

    issuer = TokenIssuer("http://issuer.test", SigningKey.generate("idp-1"))
    app = served(TokenVerifier(issuer.issuer, issuer.audience, issuer.jwks()))

    def bearer(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.issue('p', 'isj-bc', [role])}"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://intake.test") as client:
        stats = {who: await client.get("/stats", headers=headers) for who, headers in (
            ("anyone", {}), ("case-manager", bearer("case-manager")), ("operator", bearer("operator")))}
        document = {who: await client.get("/openapi.json", headers=headers) for who, headers in (
            ("anyone", {}), ("case-manager", bearer("case-manager")))}
        pages = [await client.get(path) for path in ("/docs", "/redoc", "/docs/oauth2-redirect")]
    assert stats["anyone"].status_code == 401 and stats["anyone"].json()["detail"]["code"] == "MISSING_TOKEN"
    assert stats["case-manager"].status_code == 403 and stats["case-manager"].json()["detail"]["code"] == "FORBIDDEN"
    assert stats["operator"].status_code == 200 and stats["operator"].json()["service"] == "intake"
    assert document["anyone"].status_code == 401
    assert document["case-manager"].status_code == 200
    assert "/stats" in document["case-manager"].json()["paths"]
    assert [page.status_code for page in pages] == [404, 404, 404]
