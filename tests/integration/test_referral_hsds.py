"""The service directory as Open Referral HSDS 3.0 (``GET /v1/services/hsds``) on the real
database: every service valid against HSDS 3.0's own schemas (vendored in
contracts/schemas/hsds/, formats checked, and no field HSDS does not define), the page
valid against HSDS's ``Page``; institutions as organizations, addresses as locations,
and what a provider updates (``ro.punte.service.updated.v1``) in the next export."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from contracts.reference import counties, institutions, risk_categories, social_services
from services.referral.adapters.tables import services
from services.referral.domain import hsds
from services.referral.entrypoints.http import router
from tests.integration.helpers import (
    T0,
    bearer,
    referral_api,
)

SCHEMAS = Path(__file__).parents[2] / "contracts" / "schemas" / "hsds"


def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


REGISTRY = Registry().with_resources(
    (path.name, Resource.from_contents(schema(path.name), default_specification=DRAFT202012))
    for path in SCHEMAS.glob("*.json") if path.name != "openapi.json")
SERVICE = Draft202012Validator(schema("service.json"), registry=REGISTRY, format_checker=FormatChecker())
PAGE = Draft202012Validator(schema("openapi.json")["components"]["schemas"]["Page"], format_checker=FormatChecker())


def unknown_fields(value: Any, node: dict[str, Any], where: str = "") -> list[str]:
    """Fields of ``value`` that its HSDS schema ``node`` does not define (the schemas allow
    any, so a misspelt field would pass them)."""
    if "$ref" in node:
        node = schema(node["$ref"])
    if isinstance(value, list):
        return [f for i, item in enumerate(value) for f in unknown_fields(item, node.get("items", {}), f"{where}[{i}]")]
    if not isinstance(value, dict):
        return []
    properties = node.get("properties", {})
    found = [f"{where}.{k}" for k in value if k not in properties]
    return found + [f for k, v in value.items() if k in properties for f in unknown_fields(v, properties[k], f"{where}.{k}")]


@pytest.fixture
async def api(infrastructure):
    async with referral_api(infrastructure.database_url, router) as client:
        yield client


def attributes(service: dict[str, Any]) -> dict[str, list[tuple[str, str | None]]]:
    """A service's attributes by taxonomy: (term code, value)."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    for a in service["attributes"]:
        found.setdefault(a["taxonomy_term"]["taxonomy"], []).append((a["taxonomy_term"]["code"], a.get("value")))
    return found


async def test_the_directory_exports_as_valid_hsds_3(api):
    answer = await api.get("/v1/services/hsds", headers=bearer("isj-bc", "cm.school"))
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert not sorted(PAGE.iter_errors(page), key=str)
    errors = [f"{s['name']}: {e.json_path}: {e.message}" for s in page["contents"] for e in SERVICE.iter_errors(s)]
    assert errors == []
    assert [f for s in page["contents"] for f in unknown_fields(s, schema("service.json"))] == []

    seeded = {s.id: s for s in social_services()}
    assert page["total_items"] == len(page["contents"]) == len(seeded)
    by_id = {dict(attributes(s)[hsds.DIRECTORY_TAXONOMY])["punte-service-id"]: s for s in page["contents"]}
    assert set(by_id) == set(seeded)

    day_centre = by_id["centrul-de-zi-pentru-copilul-aflat-in-dificultate"]
    assert day_centre["status"] == "active" and day_centre["description"] == "children in difficulty"
    assert day_centre["organization"]["name"] == "DAS Bacău"
    assert day_centre["organization"]["organization_identifiers"][0]["identifier"] == "das-bacau"
    assert day_centre["organization_id"] == day_centre["organization"]["id"]
    [at] = day_centre["service_at_locations"]
    assert at["location"]["description"] == "str. Mircea Eliade nr. 6, Bacău" and at["location"]["location_type"] == "physical"
    assert day_centre["service_areas"][0]["name"] == "Județul Bacău"
    facts = attributes(day_centre)
    assert sorted(code for code, _ in facts[hsds.RISK_TAXONOMY]) == ["extreme_poverty", "neglect", "school_absenteeism"]
    assert facts[hsds.NOMENCLATURE_TAXONOMY] == [("8891 CZ-C-II", None)]
    assert ("capacity", "20") in facts[hsds.DIRECTORY_TAXONOMY]
    # A service the county's strategy only proposes is not running yet.
    proposed = [s for sid, s in by_id.items() if seeded[sid].status == "proposed"]
    assert proposed and {s["status"] for s in proposed} == {"inactive"}

    # Ids are UUIDs derived from Punte's: the same in every export.
    again = (await api.get("/v1/services/hsds", headers=bearer("isj-bc", "cm.school"))).json()
    assert [s["id"] for s in again["contents"]] == [s["id"] for s in page["contents"]]


async def test_what_a_provider_updates_is_in_the_next_export_and_the_directory_rule_holds(api):
    async with api.engine.begin() as conn:
        await conn.execute(sa.update(services).where(
            services.c.service_id == "centrul-de-zi-pentru-copilul-aflat-in-dificultate").values(
            capacity=24, occupancy=24, waiting=7, accepting=False, updated_at=T0))
    page = (await api.get("/v1/services/hsds", headers=bearer("dgaspc-bc", "cm.ana"))).json()
    [day_centre] = [s for s in page["contents"]
                    if ("punte-service-id", "centrul-de-zi-pentru-copilul-aflat-in-dificultate")
                    in attributes(s)[hsds.DIRECTORY_TAXONOMY]]
    facts = dict(attributes(day_centre)[hsds.DIRECTORY_TAXONOMY])
    assert (facts["capacity"], facts["occupancy"], facts["waiting"], facts["accepting"]) == ("24", "24", "7", "false")
    assert day_centre["status"] == "temporarily closed" and day_centre["last_modified"] == T0.isoformat()
    assert not list(SERVICE.iter_errors(day_centre))

    # The same rule as GET /v1/services (directory.read): no token, no directory; an
    # auditor or the operator reads no directory either.
    assert (await api.get("/v1/services/hsds")).status_code == 401
    for role in ("auditor", "operator"):
        assert (await api.get("/v1/services/hsds", headers=bearer(None, "x", role))).status_code == 403


def test_the_example_in_the_contract_is_valid_hsds_and_what_the_export_says():
    doc = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = doc[doc.index("#### The directory as Open Referral HSDS 3.0"):doc.index("## Audit: access events")]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    assert not list(SERVICE.iter_errors(example)) and unknown_fields(example, schema("service.json")) == []
    seed = next(s for s in social_services() if s.id == "centrul-de-zi-pentru-copilul-cu-nevoi-speciale")
    row = {"service_id": seed.id, "provider": seed.provider_institution, "name": seed.name,
           "nomenclature_code": seed.nomenclature_code, "categories": list(seed.categories), "capacity": seed.capacity,
           "occupancy": seed.occupancy, "waiting": seed.waiting, "accepting": True,
           "updated_at": datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)}
    built = hsds.service(row, seed, institutions()[seed.provider_institution], counties(), risk_categories())
    shown = {a["id"] for a in example["attributes"]}
    assert {**built, "attributes": [a for a in built["attributes"] if a["id"] in shown]} == example
