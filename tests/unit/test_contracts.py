"""The public contract holds together: JSON Schemas, examples, pydantic models, topics.yaml
and the AsyncAPI document agree with one another. No network, no broker."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from contracts import events, reference
from contracts.events import PAYLOADS, EventType
from runtime.cloudevents import RFC_3339
from runtime.schemas import schema

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / "contracts"
SCHEMAS = CONTRACTS / "schemas"
EXAMPLES = CONTRACTS / "examples"
TOOLS = CONTRACTS / "tools"
SCHEMA_BASE = "https://punte.ro/schemas/"

EVENT_TYPES = list(EventType)
# Schemas of what travels inside an event, encrypted (report v3's `sealed`), and their models.
PLAINTEXTS: dict[str, type[BaseModel]] = {"ro.punte.report.sealed.v3": events.SealedReport}
EXAMPLE_FILES = sorted(EXAMPLES.glob("*/*.json"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def schema_for(event_type: EventType | str) -> dict[str, Any]:
    return load_json(SCHEMAS / f"{EventType(event_type).value}.json")


def validator_for(event_type: EventType | str) -> Draft202012Validator:
    return Draft202012Validator(schema_for(event_type), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_accepts(event_type: EventType | str, instance: Any) -> bool:
    return validator_for(event_type).is_valid(instance)


def model_accepts(event_type: EventType | str, instance: Any) -> bool:
    try:
        PAYLOADS[EventType(event_type)].model_validate(instance)
    except ValidationError:
        return False
    return True


def example_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def cnp_is_valid(cnp: str) -> bool:
    """Romanian CNP: check digit (weights 279146358279, sum mod 11, 10 -> 1) and birth date."""
    if len(cnp) != 13 or not cnp.isdigit() or cnp[0] == "0":
        return False
    total = sum(int(d) * int(w) for d, w in zip(cnp[:12], "279146358279", strict=True)) % 11
    if int(cnp[12]) != (1 if total == 10 else total):
        return False
    century = {"1": 1900, "2": 1900, "3": 1800, "4": 1800, "5": 2000, "6": 2000}.get(cnp[0])
    if century is None:
        return True  # 7, 8, 9: residents; no birth century encoded
    try:
        date(century + int(cnp[1:3]), int(cnp[3:5]), int(cnp[5:7]))
    except ValueError:
        return False
    return True


# --- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.json")), ids=lambda p: p.name)
def test_schema_is_valid_2020_12(path: Path) -> None:
    schema = load_json(path)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE}{path.name}"
    Draft202012Validator.check_schema(schema)


def test_every_event_type_has_a_schema_and_nothing_else_does() -> None:
    expected = {f"{t.value}.json" for t in EVENT_TYPES} | {"cloudevents-binary-kafka.json"} | {
        f"{name}.json" for name in PLAINTEXTS}
    assert {p.name for p in SCHEMAS.glob("*.json")} == expected


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.value)
def test_event_schemas_are_closed_objects(event_type: EventType) -> None:
    schema = schema_for(event_type)
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    for name, sub in schema.get("$defs", {}).items():
        if sub.get("type") == "object":
            assert sub["additionalProperties"] is False, name


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.value)
def test_category_enum_is_the_reference_list(event_type: EventType) -> None:
    category = schema_for(event_type).get("$defs", {}).get("Category")
    if category is not None and "enum" in category:
        assert category["enum"] == list(reference.risk_categories())
    elif category is not None:  # reports: the shape here, the vocabulary in intake
        assert all(re.fullmatch(category["pattern"], c) for c in reference.risk_categories())


# --- schema and model agree ------------------------------------------------------------

_CONSTRAINTS = ("pattern", "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum",
                "exclusiveMinimum", "exclusiveMaximum", "enum", "const")
# Properties whose free strings in the models the schemas narrow to the reference category ids.
_CATEGORY_PROPERTIES = {"categories", "new_categories", "category"}


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _constraints(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The constraint keywords of a property, looking through $ref, anyOf and null branches."""
    found: dict[str, Any] = {}
    branches = node.get("anyOf", []) + node.get("oneOf", []) + [node]
    for branch in branches:
        branch = _resolve(branch, root)
        for key in _CONSTRAINTS:
            if key in branch:
                found[key] = branch[key]
        if branch.get("type") == "array" and "items" in branch:
            for key, value in _constraints(branch["items"], root).items():
                found[f"items.{key}"] = value
    if found.get("const") is not None:  # pydantic may render a one-value Literal as const
        found["enum"] = [found.pop("const")]
    return found


def _object_shapes(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    shapes = {"<root>": schema}
    for name, sub in schema.get("$defs", {}).items():
        if sub.get("type") == "object" and "properties" in sub:
            shapes[name] = sub
    return shapes


@pytest.mark.parametrize("event_type", [*EVENT_TYPES, *PLAINTEXTS], ids=lambda t: getattr(t, "value", t))
def test_schema_mirrors_the_pydantic_model(event_type: EventType | str) -> None:
    if event_type in PLAINTEXTS:
        ours, theirs = load_json(SCHEMAS / f"{event_type}.json"), PLAINTEXTS[event_type].model_json_schema()
    else:
        ours = schema_for(event_type)
        theirs = PAYLOADS[EventType(event_type)].model_json_schema(mode="validation")
    our_shapes, their_shapes = _object_shapes(ours), _object_shapes(theirs)
    assert set(their_shapes) <= set(our_shapes) | {"<root>"}, "sub-object names differ"
    for name, their_shape in their_shapes.items():
        our_shape = our_shapes[name]
        assert set(our_shape["properties"]) == set(their_shape["properties"]), name
        assert set(our_shape.get("required", [])) == set(their_shape.get("required", [])), name
        for prop, their_prop in their_shape["properties"].items():
            mine = _constraints(our_shape["properties"][prop], ours)
            expected = _constraints(their_prop, theirs)
            if prop in _CATEGORY_PROPERTIES:  # the schema narrows free strings to the reference ids
                for key in ("enum", "items.enum"):
                    if key in mine and key not in expected:
                        assert mine.pop(key) == list(reference.risk_categories()), f"{name}.{prop}"
            assert mine == expected, f"{name}.{prop}: schema {mine} != model {expected}"


# --- examples --------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", EVENT_TYPES, ids=lambda t: t.value)
def test_every_event_type_has_two_examples(event_type: EventType) -> None:
    assert len(list((EXAMPLES / event_type.value).glob("*.json"))) >= 2


def test_example_folders_are_event_types() -> None:
    assert {p.name for p in EXAMPLES.iterdir() if p.is_dir()} <= {t.value for t in EVENT_TYPES}


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=example_id)
def test_example_matches_schema_and_model(path: Path) -> None:
    event_type = EventType(path.parent.name)
    instance = load_json(path)
    errors = [e.message for e in validator_for(event_type).iter_errors(instance)]
    assert errors == []
    # And as the services read it (runtime.schemas: the compiled validator decides).
    assert schema(event_type.value).problem(instance) is None
    PAYLOADS[event_type].model_validate(instance)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=example_id)
def test_example_uses_reference_data(path: Path) -> None:
    """Examples name real institutions, UATs and categories, and only valid synthetic CNPs."""
    model = PAYLOADS[EventType(path.parent.name)].model_validate(load_json(path))
    known = reference.institutions()
    for field in ("lead", "referrer", "to", "recipient", "forward_to", "actor_institution"):
        if getattr(model, field, None) is not None:
            assert getattr(model, field) in known, field
    for inst_id in [*getattr(model, "informed", []), *getattr(model, "escalate_to", [])]:
        assert inst_id in known
    if getattr(model, "service_id", None) is not None:
        assert model.service_id in {s.id for s in reference.social_services()}
    if getattr(model, "outcome", None) is not None and isinstance(model.outcome, str):
        assert model.outcome in reference.referral_outcomes()
    reporter = getattr(model, "reporter", None)
    if reporter is not None:
        assert reporter.institution in known
    child = getattr(model, "child", None)
    siruta = child.uat_siruta if child is not None else getattr(model, "uat_siruta", None)
    if siruta is not None:
        assert siruta in reference.uats()
    if child is not None and getattr(child, "cnp", None) is not None:
        assert cnp_is_valid(child.cnp), child.cnp
    reason = getattr(model, "reason", None)
    if isinstance(reason, events.Reason):
        assert reason.code in reference.rejection_codes()
    assert set(getattr(model, "categories", None) or []) <= set(reference.risk_categories())


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=example_id)
def test_example_missing_required_field_is_rejected_by_both(path: Path) -> None:
    event_type = EventType(path.parent.name)
    instance = load_json(path)
    for field in schema_for(event_type)["required"]:
        broken = copy.deepcopy(instance)
        del broken[field]
        assert not schema_accepts(event_type, broken), field
        assert not model_accepts(event_type, broken), field


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=example_id)
def test_example_extra_field_is_rejected_by_both(path: Path) -> None:
    event_type = EventType(path.parent.name)
    broken = load_json(path) | {"unexpected": 1}
    assert not schema_accepts(event_type, broken)
    assert not model_accepts(event_type, broken)


def test_nested_extra_field_and_bad_values_are_rejected_by_both() -> None:
    event_type = EventType.REPORT_SUBMITTED
    good = load_json(EXAMPLES / event_type.value / "01-neglect-colonesti-social-worker.json")
    bad_cases = {
        "nested extra": {**good, "child": {**good["child"], "ethnicity": "x"}},
        "bad cnp pattern": {**good, "child": {**good["child"], "cnp": "0123"}},
        "no categories": {**good, "categories": []},
        "empty description": {**good, "description": ""},
        "long description": {**good, "description": "x" * 4001},
        "bad channel": {**good, "channel": "pigeon"},
    }
    for name, instance in bad_cases.items():
        assert not schema_accepts(event_type, instance), name
        assert not model_accepts(event_type, instance), name


def test_report_v2_bad_values_are_rejected_by_both() -> None:
    event_type = EventType.REPORT_SUBMITTED_V2
    good = load_json(EXAMPLES / event_type.value / "01-physical-abuse-corbasca-household-observation.json")
    child, household, sheet = good["child"], good["household"], good["observation_sheet"]
    bad_cases = {
        "no risks": {**good, "risks": []},
        "eleven risks": {**good, "risks": [{"category": "neglect"}] * 11},
        "risk without category": {**good, "risks": [{"indicators": ["x"]}]},
        "long indicator": {**good, "risks": [{"category": "neglect", "indicators": ["x" * 201]}]},
        "nested extra in risk": {**good, "risks": [{"category": "neglect", "severity": 3}]},
        "county not a county": {**good, "child": {**child, "county": "XX"}},
        "age 18": {**good, "child": {**child, "estimated_age_years": 18}},
        "negative age": {**good, "child": {**child, "estimated_age_years": -1}},
        "bad sex": {**good, "child": {**child, "sex": "X"}},
        "long address": {**good, "child": {**child, "address": "x" * 301}},
        "bad sibling cnp": {**good, "household": {**household, "siblings": [{"cnp": "123"}]}},
        "21 siblings": {**good, "household": {**household, "siblings": [{}] * 21}},
        "carer without relationship": {**good, "household": {**household, "carer": {"given_name": "Ana"}}},
        "bad relationship": {**good, "household": {**household, "carer": {"relationship": "neighbour"}}},
        "bad place": {**good, "place_of_occurrence": "street"},
        "bad already informed": {**good, "already_informed": ["press"]},
        "sheet item not boolean": {**good, "observation_sheet": {**sheet, "housing": {"overcrowding": 2}}},
        "sheet unknown section": {**good, "observation_sheet": {**sheet, "leisure": {}}},
        "sheet without number": {**good, "observation_sheet": {k: v for k, v in sheet.items() if k != "sheet_number"}},
    }
    for name, instance in bad_cases.items():
        assert not schema_accepts(event_type, instance), name
        assert not model_accepts(event_type, instance), name


def test_referral_bad_values_are_rejected_by_both() -> None:
    command = load_json(EXAMPLES / EventType.REFERRAL_COMMAND.value / "04-complete-psychological.json")
    request = load_json(EXAMPLES / EventType.REFERRAL_REQUEST.value / "01-day-centre-das-bacau-with-consent.json")
    consent = request["consent"]
    service = load_json(EXAMPLES / EventType.SERVICE_UPDATED.value / "01-cci-colonesti.json")
    overdue = load_json(EXAMPLES / EventType.REFERRAL_OVERDUE.value / "01-decide-level-2-dgaspc.json")
    transition = load_json(EXAMPLES / EventType.REFERRAL_TRANSITIONED.value / "02-expire-no-response.json")
    requested = load_json(EXAMPLES / EventType.REFERRAL_REQUESTED.value / "03-service-day-centre-consent.json")
    bad_cases = {
        EventType.REFERRAL_COMMAND: {
            "unknown command": {**command, "command": "expire"},
            "empty reason": {**command, "reason": ""},
            "long reason": {**command, "reason": "x" * 1001},
            "long note": {**command, "note": "x" * 4001},
            "bad role": {**command, "actor": {"person": "u-1", "roles": ["director"]}},
            "actor without person": {**command, "actor": {"roles": ["supervisor"]}},
            "long assignee": {**command, "assignee": "x" * 101},
            "nested extra in actor": {**command, "actor": {**command["actor"], "email": "a@b.ro"}},
        },
        EventType.REFERRAL_REQUEST: {
            "bad kind": {**request, "kind": "case"},
            "consent by a neighbour": {**request, "consent": {**consent, "given_by": "neighbour"}},
            "consent without expiry": {**request, "consent": {k: v for k, v in consent.items() if k != "expires_on"}},
            "empty purpose": {**request, "consent": {**consent, "purpose": ""}},
            "long note": {**request, "note": "x" * 4001},
        },
        EventType.SERVICE_UPDATED: {
            "negative capacity": {**service, "capacity": -1},
            "negative waiting": {**service, "waiting": -3},
            "accepting not boolean": {**service, "accepting": 2},
        },
        EventType.REFERRAL_OVERDUE: {
            "level 3": {**overdue, "level": 3},
            "level 0": {**overdue, "level": 0},
            "unknown step": {**overdue, "step": "return_after"},
        },
        EventType.REFERRAL_TRANSITIONED: {
            "actor_institution missing": {k: v for k, v in transition.items() if k != "actor_institution"},
            "bad urgency": {**transition, "urgency": "P4"},
        },
        EventType.REFERRAL_REQUESTED: {
            "bad legal basis": {**requested, "legal_basis": "legitimate-interest"},
            "bad kind": {**requested, "kind": "information"},
            "deadlines not a mapping": {**requested, "deadlines": ["decide"]},
        },
    }
    for event_type, cases in bad_cases.items():
        for name, instance in cases.items():
            assert not schema_accepts(event_type, instance), (event_type, name)
            assert not model_accepts(event_type, instance), (event_type, name)


def test_audit_bad_values_are_rejected_by_both() -> None:
    access = load_json(EXAMPLES / EventType.ACCESS.value / "01-dgaspc-case-manager-reads-case.json")
    search = load_json(EXAMPLES / EventType.ACCESS.value / "02-auditor-searches-trail.json")
    checkpoint = load_json(EXAMPLES / EventType.AUDIT_CHECKPOINT.value / "01-bacau-1024.json")
    bad_cases = {
        EventType.ACCESS: {
            "actor_institution missing": {k: v for k, v in access.items() if k != "actor_institution"},
            "empty purpose": {**access, "purpose": ""},
            "long purpose": {**access, "purpose": "x" * 201},
            "role not a string": {**access, "roles": [1]},
            "query value not a string": {**search, "query": {"limit": 100}},
            "query not a mapping": {**search, "query": ["case_id"]},
        },
        EventType.AUDIT_CHECKPOINT: {
            "negative size": {**checkpoint, "size": -1},
            "fractional size": {**checkpoint, "size": 1.5},
            "note missing": {k: v for k, v in checkpoint.items() if k != "note"},
        },
    }
    for event_type, cases in bad_cases.items():
        for name, instance in cases.items():
            assert not schema_accepts(event_type, instance), (event_type, name)
            assert not model_accepts(event_type, instance), (event_type, name)


def test_referral_command_names_are_the_lifecycle() -> None:
    """The commands an institution may send are the lifecycle's, less the network's own
    (expire), plus the team inbox's (claim, assign)."""
    from services.referral.domain.referral import RULES, Side

    schema_enum = schema_for(EventType.REFERRAL_COMMAND)["properties"]["command"]["enum"]
    institutions_may = {name for name, rule in RULES.items() if rule.side is not Side.SYSTEM}
    assert set(schema_enum) == institutions_may | {"claim", "assign"}
    assert {name for name, rule in RULES.items() if rule.side is Side.SYSTEM} == {"expire"}


def test_docs_lifecycle_table_mirrors_the_rules() -> None:
    """docs/contracts.md "Referrals" lists exactly RULES: who, from states, to state, needs."""
    from services.referral.domain.referral import RULES

    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text.split("## Referrals", 1)[1].split("\n## ", 1)[0]
    table = section.split("| command | who | from states | to state | needs |", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.strip().splitlines()[1:]:
        command, who, from_states, to_state, needs = (cell.strip() for cell in line.strip("|").split("|"))
        rows[command.strip("`")] = (who, set(re.findall(r"`([a-z-]+)`", from_states)), to_state, needs)
    assert set(rows) == set(RULES)
    sides = {"receiver": "receiver", "referrer": "referrer", "system": "network"}
    for command, rule in RULES.items():
        who, from_states, to_state, needs = rows[command]
        assert who == ("either" if command == "note" else sides[rule.side.value]), command
        assert from_states == {s.value for s in rule.from_states}, command
        assert to_state == (f"`{rule.to.value}`" if rule.to else "(unchanged)"), command
        assert ("reason" in needs) == rule.needs_reason and ("outcome" in needs) == rule.needs_outcome, command


def test_referral_examples_use_catalogue_codes() -> None:
    """Transitions name a lifecycle state and command; overdue steps have a deadline."""
    from services.referral.domain.referral import RULES, State

    states = {s.value for s in State}
    for path in sorted((EXAMPLES / EventType.REFERRAL_TRANSITIONED.value).glob("*.json")):
        transition = load_json(path)
        assert transition["command"] in set(RULES) | {"claim", "assign"}, path.name
        assert {transition["from_state"], transition["to_state"]} <= states, path.name
        rule = RULES.get(transition["command"])
        if rule is not None:
            assert transition["from_state"] in {s.value for s in rule.from_states}, path.name
            assert transition["to_state"] == (rule.to or State(transition["from_state"])).value, path.name
        if transition["actor_institution"] is None:
            assert transition["command"] == "expire" and transition["reason"] == "NO_RESPONSE"
    steps = set(reference.referral_deadlines()["levels"]["P0"]) - {"clock", "note", "escalate_to_coordinator"}
    assert set(events.ReferralOverdue.model_fields["step"].annotation.__args__) <= steps


def test_access_examples_read_as_documented() -> None:
    """Institutions' people read a case for their institution; auditors search with no institution."""
    for path in sorted((EXAMPLES / EventType.ACCESS.value).glob("*.json")):
        access = events.AccessRecorded.model_validate(load_json(path))
        if access.actor_institution is None:
            assert access.service == "audit" and "auditor" in access.roles and access.query, path.name
        else:
            assert access.case_id is not None and access.resource.startswith("/v1/"), path.name
            assert access.actor.startswith(f"{access.actor_institution}/"), path.name


def test_checkpoint_examples_are_signed_notes_of_their_fields() -> None:
    """Each example's note is a C2SP signed note whose body is origin, size and root, signed
    by the log (key name = origin) with an Ed25519 signature line of 4 + 64 bytes."""
    import base64

    from services.audit.domain import checkpoint

    for path in sorted((EXAMPLES / EventType.AUDIT_CHECKPOINT.value).glob("*.json")):
        example = events.AuditCheckpoint.model_validate(load_json(path))
        note = checkpoint.parse(example.note)
        assert note.body == f"{example.origin}\n{example.size}\n{example.root}\n", path.name
        assert (note.checkpoint.origin, note.checkpoint.size) == (example.origin, example.size), path.name
        assert base64.b64encode(note.checkpoint.root).decode() == example.root, path.name
        assert [(s.name, len(s.keyhash) + len(s.raw)) for s in note.signatures] == [(example.origin, 68)], path.name
        if example.size == 0:  # RFC 9162: the hash of an empty list is SHA-256 of nothing
            assert example.root == base64.b64encode(hashlib.sha256(b"").digest()).decode()


def test_report_risk_category_vocabulary_is_left_to_intake() -> None:
    """A report's schema checks a category's shape only, so the reference list can grow
    within a schema version; intake answers UNKNOWN_CATEGORY for an id it does not know."""
    event_type = EventType.REPORT_SUBMITTED_V2
    good = load_json(EXAMPLES / event_type.value / "03-health-risk-ungureni-minimal.json")
    assert schema_accepts(event_type, {**good, "risks": [{"category": "witchcraft"}]})
    assert not schema_accepts(event_type, {**good, "risks": [{"category": "Witch Craft!"}]})
    assert model_accepts(event_type, {**good, "risks": [{"category": "witchcraft"}]})


def test_observation_sheet_item_ids_are_left_to_the_catalogue() -> None:
    """Schema and model accept any item id in a section; reference.observation_sheet_items()
    is the catalogue intake checks (UNKNOWN_OBSERVATION_ITEM)."""
    event_type = EventType.REPORT_SUBMITTED_V2
    good = load_json(EXAMPLES / event_type.value / "01-physical-abuse-corbasca-household-observation.json")
    instance = {**good, "observation_sheet": {**good["observation_sheet"], "housing": {"has_garden": True}}}
    assert schema_accepts(event_type, instance) and model_accepts(event_type, instance)
    assert "has_garden" not in reference.observation_sheet_items()["housing"]
    sections = set(reference.observation_sheet_items())
    assert sections == set(events.ObservationSheet.model_fields) - {"sheet_number", "observed_on"}


# --- model-built instances -------------------------------------------------------------

WHEN = datetime(2025, 3, 10, 7, 41, 12, tzinfo=timezone.utc)
REPORTER = events.Reporter(institution="spas-colonesti", role="social-worker")
REASON = events.Reason(code="INVALID_CNP", message_ro="CNP invalid.", message_en="Invalid CNP.")


def built_instances() -> list[tuple[EventType, BaseModel]]:
    """One full and one minimal instance of every payload model, built in Python."""
    return [
        (EventType.REPORT_SUBMITTED, events.ReportSubmitted(
            reporter=REPORTER, channel="school",
            child=events.ChildIdentity(cnp="6150312041239", given_name="Ana", family_name="Testescu",
                                       birth_date=date(2015, 3, 12), uat_siruta=21891),
            categories=["neglect"], description="Exemplu sintetic.", immediate_danger=True, occurred_at=WHEN)),
        (EventType.REPORT_SUBMITTED, events.ReportSubmitted(
            reporter=REPORTER, channel="anonymous", child=events.ChildIdentity(uat_siruta=20297),
            categories=["begging"], description="x")),
        (EventType.REPORT_SUBMITTED_V2, events.ReportSubmittedV2(
            reporter=REPORTER, channel="social-worker",
            child=events.ChildIdentityV2(cnp="6150312041239", given_name="Ana", family_name="Testescu",
                                         birth_date=date(2015, 3, 12), sex="F", uat_siruta=21891, county="BC",
                                         address="Sat Colonești nr. 1 (fictiv)"),
            household=events.Household(
                carer=events.Carer(given_name="Elena", family_name="Testescu", relationship="grandparent"),
                siblings=[events.Person(cnp="5121109044569")], alleged_abuser_in_household=True,
                domestic_violence=True),
            place_of_occurrence="family",
            risks=[events.Risk(category="neglect", indicators=["haine nepotrivite anotimpului"]),
                   events.Risk(category="parents_abroad")],
            description="Exemplu sintetic.", immediate_danger=True, already_informed=["112", "school"],
            observation_sheet=events.ObservationSheet(
                sheet_number="FO-1", observed_on=date(2025, 3, 10), economic={"no_income": True},
                social={"parents_working_abroad": True}, health={"not_vaccinated": False},
                education={"absenteeism": True}, housing={"overcrowding": False},
                risk_behaviours={"alcohol_in_family": False}),
            occurred_at=WHEN)),
        (EventType.REPORT_SUBMITTED_V2, events.ReportSubmittedV2(
            reporter=REPORTER, channel="anonymous",
            child=events.ChildIdentityV2(given_name="Ion", family_name="Exemplu", estimated_age_years=9, county="NT"),
            risks=[events.Risk(category="begging")], description="x")),
        (EventType.REPORT_SUBMITTED_V3, events.ReportSubmittedV3(
            reporter=REPORTER, channel="social-worker",
            child=events.ChildWhereabouts(uat_siruta=21891, county="BC"), place_of_occurrence="family",
            risks=[events.ReportedRisk(category="neglect")], immediate_danger=True, already_informed=["112"],
            observation_sheet=events.ObservationSheet(sheet_number="FO-1", observed_on=date(2025, 3, 10)),
            occurred_at=WHEN, sealed="eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.a2V5.aXY.Y2lwaGVy.dGFn")),
        (EventType.REPORT_SUBMITTED_V3, events.ReportSubmittedV3(
            reporter=REPORTER, channel="anonymous", child=events.ChildWhereabouts(county="NT"),
            risks=[events.ReportedRisk(category="begging")], sealed="eyJ9..aXY.Y2lwaGVy.dGFn")),
        (EventType.REFERRAL_ACCEPT, events.ReferralAccept(referral_id="ref-1", note="ok")),
        (EventType.REFERRAL_ACCEPT, events.ReferralAccept(referral_id="ref-1")),
        (EventType.OUTCOME, events.Outcome(
            subject_id="e-1", subject_type=EventType.REPORT_SUBMITTED.value, status="accepted",
            case_id="case-1", referral_id="ref-1", urgency=events.Urgency.P1, informed=["spas-colonesti"])),
        (EventType.OUTCOME, events.Outcome(subject_id="e-2", subject_type=None, status="rejected", reason=REASON)),
        (EventType.OUTCOME, events.Outcome(
            subject_id="e-3", subject_type=EventType.REPORT_SUBMITTED_V2.value, status="accepted",
            case_id="case-1", urgency=events.Urgency.P1, merged=True, possible_duplicate_of=["case-9"])),
        (EventType.CASE_OPENED, events.CaseOpened(
            case_id="case-1", child_ref="chd-1", uat_siruta=21891, categories=["neglect"],
            urgency=events.Urgency.P1, lead="dgaspc-bc", informed=["spas-colonesti"], report_id="e-1",
            reporter=REPORTER, received_at=WHEN)),
        (EventType.CASE_OPENED, events.CaseOpened(
            case_id="case-2", child_ref="chd-2", uat_siruta=20297, categories=[], urgency=events.Urgency.P3,
            lead="das-bacau", informed=[], report_id="e-2", reporter=REPORTER, received_at=WHEN)),
        (EventType.CASE_OPENED, events.CaseOpened(
            case_id="case-3", child_ref="chd-3", uat_siruta=None, categories=["begging"],
            urgency=events.Urgency.P1, lead="dgaspc-nt", informed=[], report_id="e-3", reporter=REPORTER,
            received_at=WHEN, county="NT", do_not_contact=True, place_of_occurrence="public-space",
            deadlines={"acknowledge": WHEN, "first_action": WHEN}, sibling_cases=["case-4"],
            possible_duplicate_of=["case-5"])),
        (EventType.CASE_REPORT_ADDED, events.CaseReportAdded(
            case_id="case-1", report_id="e-4", reporter=REPORTER, categories=["neglect", "bullying"],
            new_categories=["bullying"], urgency=events.Urgency.P1, lead="dgaspc-bc", received_at=WHEN)),
        (EventType.CASE_REPORT_ADDED, events.CaseReportAdded(
            case_id="case-1", report_id="e-5", reporter=REPORTER, categories=["neglect"],
            new_categories=[], urgency=events.Urgency.P1, lead="dgaspc-bc", received_at=WHEN)),
        (EventType.CASE_RESTRICTED, events.CaseRestricted(
            case_id="case-1", restricted=True, at=WHEN, by="dgaspc-bc")),
        (EventType.REFERRAL_REQUESTED, events.ReferralRequested(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="dgaspc-bc",
            urgency=events.Urgency.P0, categories=["missing_child"], requested_at=WHEN)),
        (EventType.REFERRAL_ACCEPTED, events.ReferralAccepted(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="dgaspc-bc",
            accepted_at=WHEN, note="ok")),
        (EventType.REFERRAL_ACCEPTED, events.ReferralAccepted(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="dgaspc-bc", accepted_at=WHEN)),
        (EventType.CASE_NOTIFICATION, events.CaseNotification(
            notification_id="n-1", case_id="case-1", referral_id="ref-1", kind="referral-requested",
            urgency=events.Urgency.P1, categories=["neglect"], recipient="dgaspc-bc",
            summary_ro="Trimitere nouă.", summary_en="New referral.")),
        (EventType.CASE_NOTIFICATION, events.CaseNotification(
            notification_id="n-2", case_id="case-1", kind="case-informed", urgency=events.Urgency.P2,
            categories=[], recipient="dsp-bc", summary_ro="Caz.", summary_en="Case.")),
        (EventType.CASE_NOTIFICATION, events.CaseNotification(
            notification_id="n-3", case_id="case-1", kind="report-added", urgency=events.Urgency.P1,
            categories=["neglect"], recipient="spas-colonesti", summary_ro="Sesizare nouă.",
            summary_en="New report.", do_not_contact=True)),
        (EventType.REFERRAL_COMMAND, events.ReferralCommand(
            referral_id="ref-1", command="complete",
            actor=events.ActingPerson(person="u-1", roles=["case-manager", "supervisor"]),
            reason="r", outcome="case-opened", note="n", assignee="u-2", forward_to="cjrae-bc")),
        (EventType.REFERRAL_COMMAND, events.ReferralCommand(referral_id="ref-1", command="claim")),
        (EventType.REFERRAL_REQUEST, events.ReferralRequest(
            case_id="case-1", to="das-bacau", service_id="cci-bacau", kind="service", note="n",
            consent=events.Consent(given_by="parent", purpose="p", given_on=date(2025, 3, 1),
                                   expires_on=date(2025, 9, 1)))),
        (EventType.REFERRAL_REQUEST, events.ReferralRequest(case_id="case-1", kind="information-request")),
        (EventType.SERVICE_UPDATED, events.ServiceUpdated(
            service_id="cci-bacau", capacity=10, occupancy=0, waiting=0, accepting=False)),
        (EventType.SERVICE_UPDATED, events.ServiceUpdated(service_id="cci-bacau")),
        (EventType.REFERRAL_REQUESTED, events.ReferralRequested(
            referral_id="ref-2", case_id="case-1", referrer="cjrae-bc", to="das-bacau",
            urgency=events.Urgency.P2, categories=["school_absenteeism"], requested_at=WHEN, kind="service",
            service_id="cci-bacau", forwarded_from="ref-1", legal_basis="consent",
            consent=events.Consent(given_by="child", purpose="p", given_on=date(2025, 3, 1),
                                   expires_on=date(2025, 9, 1)),
            deadlines={"acknowledge": WHEN, "return_after": WHEN}, do_not_contact=True)),
        (EventType.REFERRAL_TRANSITIONED, events.ReferralTransitioned(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="dgaspc-bc",
            urgency=events.Urgency.P1, command="forward", from_state="received", to_state="rejected",
            actor_institution="dgaspc-bc", actor_person="u-1", owner="u-1", reason="r", outcome=None,
            note="n", forwarded_to="ref-2", at=WHEN)),
        (EventType.REFERRAL_TRANSITIONED, events.ReferralTransitioned(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="dgaspc-bc",
            urgency=events.Urgency.P1, command="expire", from_state="requested", to_state="failed",
            actor_institution=None, at=WHEN)),
        (EventType.REFERRAL_OVERDUE, events.ReferralOverdue(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="das-bacau",
            urgency=events.Urgency.P0, step="decide", due_at=WHEN, level=2, escalate_to=["das-bacau", "dgaspc-bc"])),
        (EventType.REFERRAL_OVERDUE, events.ReferralOverdue(
            referral_id="ref-1", case_id="case-1", referrer="spas-colonesti", to="das-bacau",
            urgency=events.Urgency.P3, step="outcome", due_at=WHEN, level=1, escalate_to=[])),
        (EventType.CASE_NOTIFICATION, events.CaseNotification(
            notification_id="n-4", case_id="case-1", referral_id="ref-1", kind="referral-returned",
            urgency=events.Urgency.P1, categories=[], recipient="spas-colonesti", summary_ro="Returnată.",
            summary_en="Returned.")),
        (EventType.DEAD_LETTER, events.DeadLetter(
            reason=REASON, service="intake", topic="punte.ingress.spas-colonesti", partition=0, offset=12,
            headers={"ce_id": "e-1"}, payload_base64="e30=", failed_at=WHEN)),
        (EventType.DEAD_LETTER_V2, events.DeadLetterV2(
            reason=REASON, service="intake", topic="punte.ingress.spas-colonesti", partition=0, offset=12,
            headers={"ce_id": "e-1"}, value_sha256="44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            value_bytes=2, body_kept=True, failed_at=WHEN)),
        (EventType.CASE_CLOSED, events.CaseClosed(
            case_id="case-1", closed_at=WHEN, closed_by="spas-colonesti", reason="goals-met",
            report_ids=["r-1", "r-2"])),
        (EventType.CASE_REOPENED, events.CaseReopened(case_id="case-1", reopened_at=WHEN, reopened_by="dgaspc-bc")),
        (EventType.ACCESS, events.AccessRecorded(
            actor="dgaspc-bc/u-0417", actor_institution="dgaspc-bc", roles=["case-manager"],
            purpose="verificare sesizare", service="intake", resource="/v1/cases/case-1", case_id="case-1",
            at=WHEN)),
        (EventType.ACCESS, events.AccessRecorded(
            actor="audit/u-0003", actor_institution=None, purpose="control", service="audit",
            resource="/entries", query={"actor": "dgaspc-bc/u-0417"}, at=WHEN)),
        (EventType.AUDIT_CHECKPOINT, events.AuditCheckpoint(
            origin="punte.ro/audit/bacau", size=0, root="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            note="punte.ro/audit/bacau\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— punte.ro/audit/bacau x\n")),
    ]


def test_built_instances_cover_every_event_type() -> None:
    assert {t for t, _ in built_instances()} == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type,model", built_instances(), ids=lambda v: getattr(v, "value", ""))
def test_model_built_instance_matches_schema(event_type: EventType, model: BaseModel) -> None:
    instance = model.model_dump(mode="json")
    errors = [e.message for e in validator_for(event_type).iter_errors(instance)]
    assert errors == []
    assert PAYLOADS[event_type].model_validate(instance) == model


# --- headers ---------------------------------------------------------------------------


def test_cloudevents_headers_schema() -> None:
    schema = load_json(SCHEMAS / "cloudevents-binary-kafka.json")
    validator = Draft202012Validator(schema)
    headers = {
        "ce_specversion": "1.0", "ce_id": "6f1c2b9e-4d3a-4f8b-9a2e-1c7d5e3b0a91",
        "ce_source": "/institutions/spas-colonesti", "ce_type": EventType.REPORT_SUBMITTED.value,
        "ce_time": "2025-03-10T07:41:12Z", "content-type": "application/json",
        "ce_signature": "A" * 86, "ce_keyid": "spas-colonesti-2025-01",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    assert validator.is_valid(headers)
    assert validator.is_valid(headers | {"ce_source": "/punte/intake", "ce_subject": "case-1"})
    assert not validator.is_valid(headers | {"ce_specversion": "0.3"})
    assert not validator.is_valid(headers | {"ce_source": "spas-colonesti"})
    assert not validator.is_valid({k: v for k, v in headers.items() if k != "ce_keyid"})
    assert not validator.is_valid({k: v for k, v in headers.items() if k != "ce_id"})
    # The signing input versions the receiver knows (docs/contracts.md "Signing").
    assert validator.is_valid(headers | {"ce_sigversion": "1"})
    assert validator.is_valid(headers | {"ce_sigversion": "2"})
    assert not validator.is_valid(headers | {"ce_sigversion": "3"})
    assert not validator.is_valid(headers | {"ce_sigversion": "v2"})
    # content-type: JSON, with parameters, in any case (as runtime.cloudevents.is_json).
    for json_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        assert validator.is_valid(headers | {"content-type": json_type}), json_type
    for other in ("text/plain", "application/jsonx", "application/json-seq"):
        assert not validator.is_valid(headers | {"content-type": other}), other


def test_the_header_schema_holds_ce_time_to_the_receivers_rfc_3339() -> None:
    """The schema's ce_time pattern is the very one runtime.cloudevents.decode applies."""
    schema = load_json(SCHEMAS / "cloudevents-binary-kafka.json")
    assert schema["properties"]["ce_time"]["pattern"] == RFC_3339.pattern


@pytest.mark.parametrize("event_type", sorted(t.value for t in EventType))
def test_the_header_schema_takes_every_event_type_the_network_sends(event_type: str) -> None:
    """Its ce_type pattern once refused the hyphen of ro.punte.case.report-added.v1, so the
    AsyncAPI message of that type (this schema allOf a const type) had no valid headers."""
    schema = load_json(SCHEMAS / "cloudevents-binary-kafka.json")
    headers = {
        "ce_specversion": "1.0", "ce_id": "6f1c2b9e-4d3a-4f8b-9a2e-1c7d5e3b0a91",
        "ce_source": "/punte/intake", "ce_type": event_type, "ce_time": "2025-03-10T07:41:12Z",
        "content-type": "application/json", "ce_signature": "A" * 86, "ce_keyid": "punte-network-1",
    }
    assert Draft202012Validator(schema).is_valid(headers)
    for wrong in ("ro.punte..v1", "ro.punte.x.-y.v1", "ro.punte.a.V1", "ro.punte.case.Opened.v1"):
        assert not Draft202012Validator(schema).is_valid(headers | {"ce_type": wrong}), wrong


# --- topics.yaml and AsyncAPI ----------------------------------------------------------


def test_topics_name_only_known_event_types_and_cover_all() -> None:
    named = {event["type"] for topic in reference.topics() for event in topic["events"]}
    assert named <= {t.value for t in EVENT_TYPES}
    assert named == {t.value for t in EVENT_TYPES}, "an event type travels on no topic"


def _asyncapi() -> dict[str, Any]:
    return yaml.safe_load((CONTRACTS / "asyncapi.yaml").read_text(encoding="utf-8"))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def test_asyncapi_channels_and_messages_match_topics() -> None:
    doc = _asyncapi()
    messages = doc["components"]["messages"]
    by_address = {channel["address"]: channel for channel in doc["channels"].values()}
    assert set(by_address) == {topic["name"] for topic in reference.topics()}
    for topic in reference.topics():
        channel = by_address[topic["name"]]
        types = {messages[_ref_name(m["$ref"])]["name"] for m in channel["messages"].values()}
        assert types == {event["type"] for event in topic["events"]}, topic["name"]
        assert channel["bindings"]["kafka"]["partitions"] == topic["partitions"]
    for message in messages.values():
        assert message["payload"]["$ref"] == f"schemas/{message['name']}.json"
        for example in message.get("examples", []):
            path = CONTRACTS / example["payload"]["$ref"]
            assert path.parent.name == message["name"] and path.is_file(), path


def test_the_docs_topic_table_is_topics_yaml() -> None:
    """docs/contracts.md "Topics: who writes and who reads" lists every topic of topics.yaml
    with the event types it carries (it once left out punte.gateway and report v3)."""
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text[text.index("## Topics: who writes and who reads"):]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z.{}-]+)` \|(.*)$", section, re.M)
            if m.group(1).startswith("punte.")}
    for topic in reference.topics():
        assert topic["name"] in rows, topic["name"]
        assert set(re.findall(r"`(ro\.punte\.[a-z0-9.-]+)`", rows[topic["name"]])) == {
            event["type"] for event in topic["events"]}, topic["name"]


def test_asyncapi_gives_the_embedded_brokers_real_address() -> None:
    """What was wrong (issue #16): the embedded server said 127.0.0.1:9092; `punte up` picks a
    free port each time, prints it and keeps it in .punte/runtime.json as kafka_bootstrap."""
    from punte.embedded import EmbeddedBroker

    embedded = _asyncapi()["servers"]["embedded"]
    host, port = embedded["host"].rsplit(":", 1)
    assert host == "127.0.0.1" and port == "{port}"
    description = embedded["variables"]["port"]["description"]
    assert "punte up" in description and "kafka_bootstrap" in description and "runtime.json" in description
    assert re.fullmatch(r"127\.0\.0\.1:[0-9]+", EmbeddedBroker().bootstrap)
    assert "kafka_bootstrap" in (ROOT / "docs" / "running.md").read_text(encoding="utf-8")


def test_asyncapi_topic_settings_are_topics_yamls() -> None:
    doc = _asyncapi()
    by_address = {channel["address"]: channel for channel in doc["channels"].values()}
    for topic in reference.topics():
        binding = by_address[topic["name"]]["bindings"]["kafka"]
        assert binding.get("topicConfiguration", {}) == {
            k: int(v) for k, v in (topic.get("configs") or {}).items()}, topic["name"]


def test_asyncapi_operations_match_producers_and_consumers() -> None:
    doc = _asyncapi()
    address_of = {key: channel["address"] for key, channel in doc["channels"].items()}
    declared: set[tuple[str, str, str]] = set()
    for topic in reference.topics():
        for actor in topic["producers"]:
            declared.add(("send", topic["name"], "institution" if actor == "{institution}" else actor))
        for actor in topic["consumers"]:
            declared.add(("receive", topic["name"], "institution" if actor == "{institution}" else actor))
    described = {
        (op["action"], address_of[_ref_name(op["channel"]["$ref"])], tag["name"])
        for op in doc["operations"].values()
        for tag in op["tags"]
    }
    assert described == declared


def test_asyncapi_document_passes_the_official_parser() -> None:
    if not (TOOLS / "node_modules" / "@asyncapi" / "parser").is_dir():
        pytest.skip("contracts/tools/node_modules is missing: run `make asyncapi-validator` "
                    "(cd contracts/tools && npm install)")
    node = shutil.which("node")
    assert node is not None, "node is required to validate contracts/asyncapi.yaml"
    result = subprocess.run(
        [node, str(TOOLS / "validate-asyncapi.mjs")], cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_deployment_guide_gives_the_declared_partitions():
    """deploy/README.md once said 1-3 and 6 partitions where topics.yaml says 1 and 3 (issue
    #16): every count its sentence gives is the declared one."""
    text = " ".join((ROOT / "deploy" / "README.md").read_text().split())
    sentence = text.split("with the partitions declared there: ", 1)[1].split(". ", 1)[0]
    declared = dict(reference.topic_partitions(["isj-bc"]))
    checked = set()
    for part in sentence.split(";"):
        count = int(re.search(r"(\d+) each", part).group(1))  # type: ignore[union-attr]
        names = re.findall(r"`(punte\.[a-z.-]+)`", part)
        if "ingress and delivery" in part:
            names += ["punte.ingress.isj-bc", "punte.delivery.isj-bc"]
        for name in names:
            assert declared[name] == count, name
            checked.add(name)
    assert checked == set(declared) - {"punte.broker-epoch"}
