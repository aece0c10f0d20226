"""Which network the operator's commands talk to, and how (decision 0038).

The same commands (`punte status`, `audit`, `webhooks`, `deadletters`, `consumers`, `outbox`)
reach either the local embedded network (`punte up`: its URLs in the state folder, tokens
minted with the issuer key it keeps) or any network over HTTPS with the operator's own
token: `--url`/`--token`, PUNTE_URL/PUNTE_TOKEN, or a named network of the config file
(``--network``, ~/.config/punte/remote.toml). Every HTTP failure becomes one line
(`OperatorError`), never a traceback."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from punte.stack import SERVICES
from punte.state import State
from runtime.settings import Settings

SERVICE_PLACEHOLDER = "{service}"


class OperatorError(Exception):
    """What went wrong, in one line for the operator; ``code`` is the command's exit code
    (1: the network refused or failed, 2: the command was not told enough)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def config_file() -> Path:
    """~/.config/punte/remote.toml, or under $XDG_CONFIG_HOME."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "punte" / "remote.toml"


@dataclass(frozen=True)
class Network:
    """Where each service answers, and the token to show it. ``state`` is set for the
    local embedded network only: its tokens are minted per role there."""

    name: str
    urls: dict[str, str]
    template: str | None = None
    token: str | None = field(default=None, repr=False)
    bootstrap: str | None = None
    kafka: Settings | None = field(default=None, repr=False)
    state: State | None = None

    @property
    def local(self) -> bool:
        return self.state is not None

    def url(self, service: str) -> str:
        if service in self.urls:
            return self.urls[service].rstrip("/")
        if self.template is not None:
            return self.template.replace(SERVICE_PLACEHOLDER, service).rstrip("/")
        raise OperatorError(f"no URL for {service}: add --url {service}=https://… (or a URL with {{service}} in it)",
                            code=2)

    def knows(self, service: str) -> bool:
        return service in self.urls or self.template is not None

    def token_for(self, role: str = "operator") -> str:
        """The operator's token; on the local network, a short-lived one for ``role``."""
        if self.state is not None:
            from punte.status import operator_token
            return operator_token(self.state, self.urls["identity"], role)
        if not self.token:
            raise OperatorError(f"no token for {self.name}: --token, PUNTE_TOKEN, or token / token_file / "
                                "token_command in the config file", code=2)
        return self.token


def parse_urls(values: list[str]) -> tuple[dict[str, str], str | None]:
    """``--url`` values: ``service=URL`` (repeatable), or one URL with ``{service}`` in it
    (``https://punte.bacau.example/{service}``, ``http://punte-{service}:8000``)."""
    urls: dict[str, str] = {}
    template: str | None = None
    for value in values:
        name, equals, rest = value.partition("=")
        if equals and name in (*SERVICES, "identity") and "://" in rest:
            urls[name] = rest
        elif SERVICE_PLACEHOLDER in value:
            template = value
        else:  # a bare URL: which service's?
            raise OperatorError(f"--url {value}: which service is that? Give service=URL (repeatable: "
                                f"{', '.join(SERVICES)}) or one URL with {{service}} in it", code=2)
    return urls, template


def _token_from(entry: dict[str, Any], where: str) -> str | None:
    """A network's token in the config file: given, in a file, or printed by a command
    (an OIDC client's, so a short-lived token is fetched at each use)."""
    if entry.get("token"):
        return str(entry["token"])
    if entry.get("token_file"):
        path = Path(str(entry["token_file"])).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise OperatorError(f"{where}: token_file {path}: {exc.strerror}", code=2) from None
    if entry.get("token_command"):
        command = shlex.split(str(entry["token_command"]))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OperatorError(f"{where}: token_command {command[0]}: {exc}", code=2) from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or [""])[-1]
            raise OperatorError(f"{where}: token_command exited with {done.returncode}: {last}", code=2)
        return done.stdout.strip()
    return None


def _kafka_settings(entry: dict[str, Any]) -> Settings | None:
    """A network's broker credentials in the config file (``[networks.<name>.kafka]``:
    security_protocol, sasl_mechanism, username, password or password_file, ca_file);
    none: PUNTE_KAFKA_* of the environment, as every Kafka client of the project."""
    kafka = entry.get("kafka")
    if not kafka:
        return None
    password = kafka.get("password")
    if kafka.get("password_file"):
        password = Path(str(kafka["password_file"])).expanduser().read_text(encoding="utf-8").strip()
    return Settings(kafka_security_protocol=kafka.get("security_protocol", "PLAINTEXT"),
                    kafka_sasl_mechanism=kafka.get("sasl_mechanism"), kafka_username=kafka.get("username"),
                    kafka_password=password,
                    kafka_ca_file=Path(str(kafka["ca_file"])).expanduser() if kafka.get("ca_file") else None)


def read_config(path: Path, name: str) -> dict[str, Any]:
    """The entry ``[networks.<name>]`` of the config file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OperatorError(f"--network {name}: no config file {path}", code=2) from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise OperatorError(f"{path}: {exc}", code=2) from None
    networks = document.get("networks", {})
    if name not in networks:
        raise OperatorError(f"{path}: no [networks.{name}] (known: {', '.join(sorted(networks)) or 'none'})", code=2)
    return networks[name]


def readable_by_others(path: Path) -> bool:
    """A config file holding a token should be the operator's alone (0600)."""
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False


def resolve(urls: list[str] | None = None, token: str | None = None, network: str | None = None,
            config: Path | None = None, bootstrap: str | None = None,
            state_dir: Path = Path(".punte")) -> Network:
    """The network a command talks to: ``--url`` (PUNTE_URL) first, then the config file's
    ``--network`` (PUNTE_NETWORK), else the local embedded network of ``state_dir``. A token
    given (``--token``, PUNTE_TOKEN) wins over the config file's."""
    if urls:
        named, template = parse_urls(urls)
        return Network(name=template or "--url", urls=named,
                       template=template, token=token, bootstrap=bootstrap)
    if network:
        path = config or config_file()
        entry = read_config(path, network)
        where = f"{path} [networks.{network}]"
        named, template = parse_urls([str(entry["url"])] if entry.get("url") else [])
        named |= {k: str(v) for k, v in entry.get("services", {}).items()}
        if not named and template is None:
            raise OperatorError(f"{where}: no url (with {{service}}) and no [services]", code=2)
        return Network(name=network, urls=named, template=template, token=token or _token_from(entry, where),
                       bootstrap=bootstrap or entry.get("bootstrap"), kafka=_kafka_settings(entry))
    state = State(state_dir)
    if not state.runtime_file.exists():
        raise OperatorError(f"no network to talk to: the local one is not running (no {state.runtime_file}; "
                            "punte up), and no --url or --network was given", code=2)
    runtime = json.loads(state.runtime_file.read_text())
    from punte.status import operator_kafka_settings
    return Network(name=f"local ({state_dir})", urls=dict(runtime["services"]), state=state,
                   bootstrap=runtime.get("kafka_bootstrap"), kafka=operator_kafka_settings(state, runtime))


# --- one line for every failure of an HTTP call ------------------------------------------

def refusal(answer: httpx.Response) -> str:
    """What a service's error answer says, in one line: the reason code and message of
    the project's error shape ({"detail": {"code", "message"}}), else the start of the text."""
    try:
        body = answer.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict):
        text = ": ".join(str(detail[k]) for k in ("code", "message") if detail.get(k))
    elif isinstance(detail, list):  # FastAPI's validation errors
        text = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}" for d in detail[:3]
                         if isinstance(d, dict))
    elif detail is not None:
        text = str(detail)
    elif isinstance(body, dict) and isinstance(body.get("reason"), dict):
        text = ": ".join(str(body["reason"][k]) for k in ("code", "message") if body["reason"].get(k))
    else:
        text = answer.text
    return " ".join(text.split())[:300]


def failure_line(service: str, method: str, url: str, error: Exception | httpx.Response) -> str:
    """``<service> <METHOD> <url>: <what happened>``, one line."""
    if isinstance(error, httpx.Response):
        what = f"{error.status_code} {error.reason_phrase}"
        said = refusal(error)
        if error.status_code == 401:
            said = said or "the token is missing, expired or not from this network's issuer"
        return f"{service} {method} {url}: {what}{': ' + said if said else ''}"
    if isinstance(error, httpx.TimeoutException):
        return f"{service} {method} {url}: no answer in time ({type(error).__name__})"
    if isinstance(error, httpx.ConnectError):
        return f"{service} {method} {url}: cannot connect ({' '.join(str(error).split()) or 'refused'})"
    return f"{service} {method} {url}: {type(error).__name__}: {' '.join(str(error).split())}"


class Operator:
    """The operator's HTTP calls to one network: each failure (no connection, a timeout,
    an answer not 2xx) raises OperatorError with one line saying which service, what and why."""

    def __init__(self, network: Network, role: str = "operator", timeout: float = 120) -> None:
        self.network = network
        self.role = role
        self.timeout = timeout

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.network.token_for(self.role)}", **(extra or {})}

    def request(self, service: str, method: str, path: str, *, headers: dict[str, str] | None = None,
                **kwargs: Any) -> httpx.Response:
        url = self.network.url(service) + path
        try:
            answer = httpx.request(method, url, headers=self.headers(headers), timeout=self.timeout, **kwargs)
        except httpx.HTTPError as exc:
            raise OperatorError(failure_line(service, method, url, exc)) from None
        if not answer.is_success:
            raise OperatorError(failure_line(service, method, url, answer))
        return answer

    def json(self, service: str, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.request(service, method, path, **kwargs)
        try:
            return answer.json()
        except ValueError:
            raise OperatorError(f"{service} {method} {answer.url}: not JSON ({answer.headers.get('content-type')}); "
                                "is that URL the service's?") from None

    def download(self, service: str, path: str, out: Path, headers: dict[str, str] | None = None) -> None:
        """Streamed to ``out`` as it comes (a year of a county's trail is a gigabyte)."""
        url = self.network.url(service) + path
        try:
            with httpx.stream("GET", url, headers=self.headers(headers), timeout=self.timeout) as answer:
                if not answer.is_success:
                    answer.read()
                    raise OperatorError(failure_line(service, "GET", url, answer))
                with out.open("wb") as file:
                    for chunk in answer.iter_bytes():
                        file.write(chunk)
        except httpx.HTTPError as exc:
            raise OperatorError(failure_line(service, "GET", url, exc)) from None
