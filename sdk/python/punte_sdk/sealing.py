"""Report v3 (docs/contracts.md, "Sealing a report"): what routing needs stays in clear;
the child's identity, the household, the description, the indicators and the notes travel
as a JWE (compact, ECDH-ES+A256KW with A256GCM) sealed to intake's current public key,
bound to the report by its ``ce_id`` and the sender. Only intake can open it."""
from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import httpx
from joserfc import jwe
from joserfc.jwk import ECKey

from punte_sdk.events import REPORT_V2, REPORT_V3, Event

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
INTAKE_KEYS_PATH = "/.well-known/jwks.json"
# A report written as v2: what stays in clear in v3 (routing, triage, yes/no facts) …
CLEAR_FIELDS = ("reporter", "channel", "place_of_occurrence", "immediate_danger", "already_informed",
                "observation_sheet", "occurred_at")
WHERE_THE_CHILD_LIVES = ("uat_siruta", "county")
# … and what is sealed. A field in neither list is refused rather than dropped or leaked.
SEALED_FIELDS = ("household", "description", "notes")
REPORT_FIELDS = frozenset(CLEAR_FIELDS + SEALED_FIELDS + ("child", "risks"))


def fetch_intake_keys(intake_url: str, *, client: httpx.Client | None = None, timeout: float = 10) -> dict[str, Any]:
    """Intake's public encryption keys (public, no token). Fetch them again when intake
    refuses with SEALED_UNREADABLE, and at least daily."""
    url = intake_url.rstrip("/") + INTAKE_KEYS_PATH
    response = client.get(url, timeout=timeout) if client else httpx.get(url, timeout=timeout)
    response.raise_for_status()
    return response.json()


def current_key(jwks: dict[str, Any]) -> dict[str, Any]:
    """The first key of intake's JWKS, the one to seal to; refused unless it is a P-256
    ``use: enc`` key for ECDH-ES+A256KW with a ``kid`` (never another key of the set:
    those are older ones kept for a rotation)."""
    keys = jwks.get("keys") or []
    if not keys:
        raise ValueError("intake's JWKS has no key")
    jwk = keys[0]
    if (jwk.get("kty"), jwk.get("crv"), jwk.get("use"), jwk.get("alg")) != ("EC", "P-256", "enc", ALG) \
            or not jwk.get("kid"):
        raise ValueError("the first key of intake's JWKS is not a P-256 ECDH-ES+A256KW encryption key with a kid")
    return {k: v for k, v in jwk.items() if k != "d"}  # only ever the public half


def seal(plaintext: dict[str, Any], intake_keys: dict[str, Any]) -> str:
    """``plaintext`` as UTF-8 JSON in a JWE compact serialization to intake's current key,
    protected header ``{"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": …}``."""
    jwk = current_key(intake_keys)
    header = {"alg": ALG, "enc": ENC, "kid": jwk["kid"]}
    return jwe.encrypt_compact(header, json.dumps(plaintext, ensure_ascii=False).encode("utf-8"),
                               ECKey.import_key(jwk))


def split_report(institution: str, report: dict[str, Any], event_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A report written as v2 (``ro.punte.report.submitted.v2``'s data, plus optional
    ``notes``) as v3's clear part (without ``sealed``) and the sealed part's plaintext,
    bound to the report ``event_id`` of ``institution``."""
    unknown = sorted(set(report) - REPORT_FIELDS)
    if unknown:
        raise ValueError(f"not fields of a report: {', '.join(unknown)}")
    child = dict(report["child"])
    clear: dict[str, Any] = {k: report[k] for k in CLEAR_FIELDS if k in report}
    clear["child"] = {k: child[k] for k in WHERE_THE_CHILD_LIVES if k in child}
    clear["risks"] = []
    indicators: dict[str, list[str]] = {}
    for risk in report["risks"]:
        extra = sorted(set(risk) - {"category", "indicators"})
        if extra:
            raise ValueError(f"not fields of a risk: {', '.join(extra)}")
        clear["risks"].append({"category": risk["category"]})
        if risk.get("indicators"):
            indicators[risk["category"]] = list(risk["indicators"])
    plaintext: dict[str, Any] = {
        "report": {"id": event_id, "institution": institution},
        "child": {k: v for k, v in child.items() if k not in WHERE_THE_CHILD_LIVES},
        "description": report["description"],
    }
    if "household" in report:
        plaintext["household"] = report["household"]
    if indicators:
        plaintext["indicators"] = indicators
    if report.get("notes"):
        plaintext["notes"] = report["notes"]
    return clear, plaintext


def sealed_report(institution: str, report: dict[str, Any], intake_keys: dict[str, Any], *,
                  id: str | None = None, time: datetime | None = None) -> Event:
    """A report written as v2, as an unsigned ``ro.punte.report.submitted.v3`` event of
    ``institution``: a fresh ``ce_id`` (unless given) that the sealed part names. Sign it,
    then send it."""
    event_id = id or str(uuid.uuid4())
    clear, plaintext = split_report(institution, report, event_id)
    clear["sealed"] = seal(plaintext, intake_keys)
    return Event.new(institution, REPORT_V3, clear, id=event_id, time=time)


def clear_report(institution: str, report: dict[str, Any], *, id: str | None = None,
                 time: datetime | None = None) -> Event:
    """A report as an unsigned ``ro.punte.report.submitted.v2`` event, everything in clear:
    accepted only until the operator ends the transition (then CLEAR_REPORT_RETIRED); send
    ``sealed_report`` instead."""
    return Event.new(institution, REPORT_V2, report, id=id, time=time)
