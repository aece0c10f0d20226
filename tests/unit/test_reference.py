"""Reference data (contracts/reference/) is complete and consistent, and the loader reads it."""
from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from contracts import reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = ROOT / "contracts" / "reference"

CATEGORY_IDS = [
    "neglect", "physical_abuse", "emotional_abuse", "sexual_abuse", "labour_exploitation",
    "sexual_exploitation", "criminal_exploitation", "trafficking", "begging", "bullying",
    "online_violence", "domestic_violence", "parents_abroad", "disability",
    "special_educational_needs", "school_absenteeism", "pregnant_minor", "health_risk",
    "hospital_abandonment", "no_identity_documents", "missing_child", "extreme_poverty",
    "offence_under_14",
]
GROUPS = {"abuse", "exploitation", "violence", "family", "health", "education", "identity",
          "safety", "poverty", "conduct"}
REJECTION_CODES = [
    "MALFORMED_ENVELOPE", "MALFORMED_PAYLOAD", "SCHEMA_VIOLATION", "UNKNOWN_EVENT_TYPE",
    "MISSING_SIGNATURE", "BAD_SIGNATURE", "UNKNOWN_KEY", "SOURCE_MISMATCH", "SENDER_NOT_ALLOWED",
    "UNKNOWN_INSTITUTION", "UNKNOWN_CATEGORY", "UNKNOWN_UAT", "INVALID_CNP",
    "CHILD_NOT_IDENTIFIABLE", "UNKNOWN_OBSERVATION_ITEM", "UNKNOWN_REFERRAL", "NOT_REFERRAL_RECIPIENT",
    "ILLEGAL_TRANSITION", "STALE_EVENT", "FUTURE_EVENT", "PROCESSING_FAILED",
    "UNKNOWN_COMMAND", "NOT_REFERRER", "NOT_ALLOWED", "REASON_REQUIRED", "OUTCOME_REQUIRED",
    "ALREADY_CLAIMED", "NOT_SUPERVISOR", "UNKNOWN_CASE", "UNKNOWN_SERVICE", "CONSENT_REQUIRED",
    "CASE_HAS_OPEN_REFERRALS", "NOT_CASE_LEAD", "UNKNOWN_CHECKPOINT", "BAD_COSIGNATURE",
]
OUTCOME_CODES = [
    "case-opened", "not-confirmed", "case-closed", "stays-in-family-with-services", "emergency-placement",
    "criminal-investigation-started", "services-provided-psychological", "services-provided-legal",
    "services-provided-medical", "services-provided-educational", "school-reintegration", "benefits-granted",
]
REFERRAL_STEPS = ["acknowledge", "decide", "first_contact", "outcome", "return_after"]
COUNTY_CODES = [
    "AB", "AG", "AR", "B", "BC", "BH", "BN", "BR", "BT", "BV", "BZ", "CJ", "CL", "CS", "CT", "CV", "DB",
    "DJ", "GJ", "GL", "GR", "HD", "HR", "IF", "IL", "IS", "MH", "MM", "MS", "NT", "OT", "PH", "SB", "SJ",
    "SM", "SV", "TL", "TM", "TR", "VL", "VN", "VS",
]
INSTITUTION_KINDS = {"DAS", "SPAS", "DGASPC", "DSP", "ISJ", "CJRAE", "IPJ", "PL"}
INGRESS_TYPES = ["ro.punte.report.submitted.v1", "ro.punte.report.submitted.v2", "ro.punte.report.submitted.v3",
                 "ro.punte.referral.accept.v1", "ro.punte.referral.command.v1", "ro.punte.referral.request.v1",
                 "ro.punte.service.updated.v1"]
# Every kind reports and takes part in referrals; only the kinds that run social services
# update the service directory.
EVERY_KIND_TYPES = INGRESS_TYPES[:6]
SERVICE_PROVIDER_KINDS = {"DAS", "SPAS", "DGASPC", "DSP", "CJRAE"}
OBSERVATION_SECTIONS = ["economic", "social", "health", "education", "housing", "risk_behaviours"]
URGENCIES = ["P0", "P1", "P2", "P3"]
ISO_DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")


def load_builder() -> ModuleType:
    path = ROOT / "contracts" / "tools" / "build_institutions.py"
    spec = importlib.util.spec_from_file_location("build_institutions", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- counties, UATs and institutions ---------------------------------------------------


def test_counties_are_the_41_counties_and_bucharest() -> None:
    counties = reference.counties()
    assert list(counties) == COUNTY_CODES
    assert counties["BC"].name == "Bacău" and counties["B"].name == "Municipiul București"
    assert counties["NT"].name == "Neamț" and counties["BN"].name == "Bistrița-Năsăud"
    assert not set("şţŞŢ") & set("".join(c.name for c in counties.values()))
    codes = [c.cnp_county_code for c in counties.values()]
    assert len(set(codes)) == 42 and all(re.fullmatch(r"[0-9]{2}", code) for code in codes)
    assert counties["BC"].cnp_county_code == "04" and counties["B"].cnp_county_code == "40"
    assert {counties["CL"].cnp_county_code, counties["GR"].cnp_county_code} == {"51", "52"}


def test_county_codes_match_the_event_model_pattern() -> None:
    from contracts.events import ChildIdentityV2

    pattern = ChildIdentityV2.model_json_schema()["properties"]["county"]["pattern"]
    assert re.findall(r"[A-Z]+", pattern) == COUNTY_CODES



def test_93_uats_of_bacau() -> None:
    uats = reference.uats()
    assert len(uats) == 93
    kinds = Counter(uat.kind for uat in uats.values())
    assert kinds == {"county-seat-municipality": 1, "municipality": 2, "town": 5, "commune": 85}
    assert {uat.county for uat in uats.values()} == {"BC"}
    assert uats[20297].name == "BACĂU"


def test_every_uat_has_exactly_one_local_authority() -> None:
    per_uat = Counter(
        inst.siruta for inst in reference.institutions().values() if inst.kind in ("DAS", "SPAS")
    )
    assert set(per_uat) == set(reference.uats())
    assert set(per_uat.values()) == {1}
    for siruta in reference.uats():
        authority = reference.local_authority(siruta)
        assert authority is not None and authority.siruta == siruta and authority.level == "local"
    assert reference.local_authority(99999) is None


def test_bacau_has_a_das_and_the_others_an_spas() -> None:
    das = reference.local_authority(20297)
    assert das is not None and (das.id, das.kind, das.name) == ("das-bacau", "DAS", "DAS Bacău")
    moinesti = reference.local_authority(20876)
    assert moinesti is not None and (moinesti.id, moinesti.name) == ("spas-moinesti", "SPAS Moinești")
    stefan = reference.local_authority(20670)
    assert stefan is not None and (stefan.id, stefan.name) == ("spas-stefan-cel-mare", "SPAS Ștefan cel Mare")
    assert sum(inst.kind == "DAS" for inst in reference.institutions().values()) == 1


def test_institution_ids_are_unique_and_well_formed() -> None:
    with (REFERENCE_DIR / "institutions.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)
    assert len(reference.institutions()) == len(rows) == 5 + 93 + 8 + 41
    assert {row["kind"] for row in rows} == INSTITUTION_KINDS
    assert {row["county"] for row in rows} == set(COUNTY_CODES)


def test_county_institutions() -> None:
    for kind in ("DGASPC", "DSP", "ISJ", "CJRAE", "IPJ"):
        inst = reference.county_institution(kind)
        assert inst.id == f"{kind.lower()}-bc" and inst.name == f"{kind} Bacău"
        assert inst.level == "county" and inst.siruta is None and inst.county == "BC"
    with pytest.raises(KeyError):
        reference.county_institution("DSP", "CJ")
    with pytest.raises(KeyError):
        reference.county_institution("DGASPC", "XX")


def test_every_other_county_has_its_dgaspc() -> None:
    for code, county in reference.counties().items():
        inst = reference.county_institution("DGASPC", code)
        assert inst.id == f"dgaspc-{code.lower()}" and inst.name == f"DGASPC {county.name}"
        assert inst.level == "county" and inst.siruta is None and inst.county == code
    assert reference.county_institution("DGASPC", "NT").name == "DGASPC Neamț"
    assert reference.institutions()["dgaspc-b"].name == "DGASPC Municipiul București"
    outside = [inst for inst in reference.institutions().values() if inst.county != "BC"]
    assert len(outside) == 41 and {inst.kind for inst in outside} == {"DGASPC"}


def test_local_police_in_municipalities_and_towns_only() -> None:
    police = [inst for inst in reference.institutions().values() if inst.kind == "PL"]
    uats = reference.uats()
    assert len(police) == 8
    for inst in police:
        assert inst.siruta is not None and uats[inst.siruta].kind != "commune"
    assert reference.institutions()["pl-targu-ocna"].name == "Poliția Locală Târgu Ocna"


def test_institutions_csv_is_up_to_date_with_its_builder() -> None:
    builder = load_builder()
    with (REFERENCE_DIR / "uat.csv").open(encoding="utf-8", newline="") as handle:
        expected = builder.render(builder.build_rows(list(csv.DictReader(handle))))
    assert (REFERENCE_DIR / "institutions.csv").read_text(encoding="utf-8") == expected, (
        "run: python contracts/tools/build_institutions.py"
    )


@pytest.mark.parametrize("name,slug,shown", [
    ("BACĂU", "bacau", "Bacău"),
    ("MOINEȘTI", "moinesti", "Moinești"),
    ("SLĂNIC-MOLDOVA", "slanic-moldova", "Slănic-Moldova"),
    ("TÂRGU OCNA", "targu-ocna", "Târgu Ocna"),
    ("ȘTEFAN CEL MARE", "stefan-cel-mare", "Ștefan cel Mare"),
    ("IZVORU BERHECIULUI", "izvoru-berheciului", "Izvoru Berheciului"),
    ("TÂRGU TROTUŞ", "targu-trotus", "Târgu Trotuş"),  # cedilla form folds too
])
def test_slug_and_display_name(name: str, slug: str, shown: str) -> None:
    builder = load_builder()
    assert builder.slug(name) == slug
    assert builder.display_name(name) == shown


# --- risk categories, triage, routing, urgency -----------------------------------------


def test_risk_categories_are_the_agreed_list() -> None:
    categories = reference.risk_categories()
    assert list(categories) == CATEGORY_IDS
    for category in categories.values():
        assert category.label_ro and category.label_en
        assert category.group in GROUPS
    anpdca = [c.id for c in categories.values() if c.anpdca]
    assert anpdca == CATEGORY_IDS[:7]


def test_urgency_levels() -> None:
    levels = reference.urgency_levels()
    assert list(levels) == URGENCIES
    for name, level in levels.items():
        assert level["label_ro"] and level["label_en"] and level["description"] and level["note"]
        assert level["clock"] == ("24/7" if name in ("P0", "P1") else "working-days")
        assert set(level["deadlines"]) == {"acknowledge", "first_action", "outcome_feedback"}
        for value in level["deadlines"].values():
            assert ISO_DURATION.match(value), value
    assert levels["P0"]["deadlines"]["acknowledge"] == "PT15M"
    assert levels["P1"]["deadlines"] == {"acknowledge": "PT24H", "first_action": "PT72H", "outcome_feedback": "P30D"}
    assert levels["P3"]["deadlines"]["first_action"] == "P6M"


def test_triage_table() -> None:
    triage = reference.triage_table()
    assert triage["version"] == 1
    assert triage["immediate_danger"] == "P0"
    assert triage["default"] == "P2"
    assert set(triage["categories"]) <= set(CATEGORY_IDS)
    assert set(triage["categories"].values()) <= set(URGENCIES)
    assert triage["categories"]["missing_child"] == "P0"
    assert all(URGENCIES.index(u) < URGENCIES.index(triage["default"]) for u in triage["categories"].values())


def test_every_category_has_a_routing_rule_with_known_roles() -> None:
    routing = reference.routing_table()
    roles = routing["roles"]
    assert routing["version"] == 1
    assert routing["precedence"] == ["DGASPC", "IPJ", "SPAS", "CJRAE", "DSP", "ISJ"]
    assert set(routing["precedence"]) == set(roles)
    assert set(roles.values()) <= {"local", "county"}
    assert roles["SPAS"] == "local"
    assert set(routing["categories"]) == set(CATEGORY_IDS)
    for category, rule in routing["categories"].items():
        assert rule["lead"] in roles, category
        assert set(rule["informed"]) <= set(roles), category
        assert rule["lead"] not in rule["informed"], category
        assert len(rule["informed"]) == len(set(rule["informed"])), category


def test_routing_tokens_resolve_to_institutions() -> None:
    for token, how in reference.routing_table()["roles"].items():
        if how == "county":
            assert reference.county_institution(token).kind == token


def test_police_always_informed_when_a_crime_is_suspected() -> None:
    rules = reference.routing_table()["categories"]
    for category in reference.risk_categories().values():
        if category.crime_suspected:
            assert "IPJ" in rules[category.id]["informed"], category.id
    for category in ("sexual_abuse", "trafficking", "missing_child"):
        assert "IPJ" in rules[category]["informed"]


# --- observation sheet, permissions ----------------------------------------------------


def test_observation_sheet_catalogue() -> None:
    items = reference.observation_sheet_items()
    assert list(items) == OBSERVATION_SECTIONS
    assert list(reference.observation_sections()) == OBSERVATION_SECTIONS
    for section, body in items.items():
        assert len(body) >= 3, section
        for item_id, labels in body.items():
            assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", item_id), item_id
            assert set(labels) == {"label_ro", "label_en"} and labels["label_ro"] and labels["label_en"]
    assert {"pregnant_minor", "single_parent", "parents_working_abroad",
            "both_parents_dead_unknown_or_deprived"} <= set(items["social"])
    assert {"no_income", "income_below_minimum", "social_benefits"} <= set(items["economic"])
    assert {"disability", "chronic_illness", "no_family_doctor", "not_vaccinated"} <= set(items["health"])
    assert {"not_enrolled", "absenteeism", "dropout"} <= set(items["education"])
    assert {"no_home", "improper_housing", "overcrowding"} <= set(items["housing"])
    assert {"alcohol_in_family", "violence_in_family", "delinquent_behaviour"} <= set(items["risk_behaviours"])
    text = (REFERENCE_DIR / "observation-sheet.yaml").read_text(encoding="utf-8")
    assert "verify against the HG 691/2015 annex" in text


def test_permissions_name_known_kinds_and_ingress_types() -> None:
    permissions = reference.permissions()
    assert list(permissions) == INGRESS_TYPES
    for event_type in EVERY_KIND_TYPES:
        assert permissions[event_type] == INSTITUTION_KINDS, event_type
    assert permissions["ro.punte.service.updated.v1"] == SERVICE_PROVIDER_KINDS
    providers = {reference.institutions()[s.provider_institution].kind for s in reference.social_services()}
    assert providers <= SERVICE_PROVIDER_KINDS
    ingress = next(topic for topic in reference.topics() if topic["kind"] == "ingress")
    assert set(permissions) <= {event["type"] for event in ingress["events"]}


@pytest.mark.parametrize("institution_id", ["das-bacau", "spas-colonesti", "dgaspc-bc", "dsp-bc", "isj-bc",
                                            "cjrae-bc", "ipj-bc", "pl-onesti", "dgaspc-nt"])
def test_every_kind_may_send_reports_and_referrals(institution_id: str) -> None:
    for event_type in EVERY_KIND_TYPES:
        assert reference.may_send(institution_id, event_type)
    provider = reference.institutions()[institution_id].kind in SERVICE_PROVIDER_KINDS
    assert reference.may_send(institution_id, "ro.punte.service.updated.v1") == provider


def test_may_send_is_false_for_unknown_institutions_and_types() -> None:
    assert not reference.may_send("spas-nowhere", "ro.punte.report.submitted.v2")
    assert not reference.may_send("", "ro.punte.report.submitted.v1")
    assert not reference.may_send("spas-colonesti", "ro.punte.report.submitted.v4")
    assert not reference.may_send("spas-colonesti", "ro.punte.outcome.v1")
    assert not reference.may_send("dgaspc-bc", "ro.punte.case.opened.v1")


# --- rejection codes, services ---------------------------------------------------------


def test_rejection_codes_are_complete() -> None:
    codes = reference.rejection_codes()
    # Codes are stable: new ones are appended, none is renamed, removed or moved.
    assert list(codes)[:len(REJECTION_CODES)] == REJECTION_CODES
    assert len(set(codes)) == len(codes)
    for code in codes.values():
        assert code.message_ro and code.message_en and code.description


def test_romanian_text_uses_comma_below_diacritics() -> None:
    """ș and ț (comma below) are correct Romanian; ş and ţ (cedilla) are not."""
    for path in REFERENCE_DIR.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        assert not set("şţŞŢ") & set(text), path.name
    assert "ă" in reference.rejection_codes()["INVALID_CNP"].message_ro
    for path in REFERENCE_DIR.glob("*.csv"):
        assert not set("şţŞŢ") & set(path.read_text(encoding="utf-8")), path.name


def test_timestamp_window_codes() -> None:
    codes = reference.rejection_codes()
    assert "7 days" in codes["STALE_EVENT"].description
    assert "5 minutes" in codes["FUTURE_EVENT"].description
    assert "ț" in codes["FUTURE_EVENT"].message_ro and "ș" in codes["STALE_EVENT"].message_ro


def test_social_services_parse() -> None:
    services = reference.social_services()
    assert len(services) == 14
    assert len({s.id for s in services}) == len(services)
    for service in services:
        assert service.provider_institution in reference.institutions()
        assert service.status in ("existing", "proposed")
        assert service.source
    by_id = {s.id: s for s in services}
    assert by_id["caminul-pentru-persoane-varstnice-bacau"].capacity == 210
    assert by_id["caminul-pentru-persoane-varstnice-bacau"].occupancy_pct == pytest.approx(92.38)
    assert by_id["cci-colonesti"].provider_institution == "spas-colonesti"
    assert by_id["centrul-de-zi-pentru-copilul-cu-nevoi-speciale"].capacity_note == "30 places + 20 outpatient"
    assert by_id["cantina-sociala"].status == "proposed" and by_id["cantina-sociala"].capacity is None
    assert by_id["caminul-pentru-persoane-varstnice-bacau"].occupancy == 194
    assert by_id["cci-colonesti"].accepting and not by_id["cantina-sociala"].accepting


def test_social_services_name_the_risk_categories_they_address() -> None:
    services = {s.id: s for s in reference.social_services()}
    for service in services.values():
        assert set(service.categories) <= set(CATEGORY_IDS), service.id
        assert len(service.categories) == len(set(service.categories)), service.id
        children = "child" in service.beneficiaries or service.id.startswith("cci-")
        if children:
            assert service.categories, service.id
    for older in ("centrul-de-zi-clubul-pensionarilor-60", "caminul-pentru-persoane-varstnice-bacau",
                  "centrul-de-zi-clubul-seniorilor"):
        assert services[older].categories == ()
    assert services["centrul-de-zi-pentru-copilul-aflat-in-dificultate"].categories == (
        "neglect", "extreme_poverty", "school_absenteeism")
    assert {"disability", "special_educational_needs"} <= set(
        services["centrul-de-zi-pentru-copilul-cu-nevoi-speciale"].categories)
    ccis = [s for s in services.values() if s.id.startswith("cci-")]
    assert len(ccis) == 5 and all(len(s.categories) >= 5 for s in ccis)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", sid) for sid in services)


# --- referrals: outcomes and deadlines -------------------------------------------------


def test_referral_outcomes_are_the_domain_codes() -> None:
    outcomes = reference.referral_outcomes()
    assert list(outcomes) == OUTCOME_CODES
    for code, labels in outcomes.items():
        assert labels["label_ro"] and labels["label_en"], code
        assert labels["group"] in {"case", "protection", "services"}, code
    assert outcomes["services-provided-psychological"]["label_ro"].startswith("Servicii acordate")
    assert "ț" in outcomes["emergency-placement"]["label_ro"]


def test_referral_deadlines() -> None:
    table = reference.referral_deadlines()
    assert table["version"] == 1
    levels = table["levels"]
    assert list(levels) == URGENCIES
    expected = {
        "P0": ["PT15M", "PT1H", "PT12H", "P30D", "PT4H"],
        "P1": ["PT24H", "PT48H", "PT72H", "P30D", "P5D"],
        "P2": ["P2D", "P5D", "P30D", "P30D", "P10D"],
        "P3": ["P5D", "P10D", "P60D", "P6M", "P20D"],
    }
    for name, level in levels.items():
        assert [level[step] for step in REFERRAL_STEPS] == expected[name], name
        assert all(ISO_DURATION.match(level[step]) for step in REFERRAL_STEPS), name
        assert level["clock"] == ("24/7" if name in ("P0", "P1") else "working-days")
        assert level["escalate_to_coordinator"] is (name in ("P0", "P1"))
        assert "Policy values" in level["note"], name
        assert set(level) == {*REFERRAL_STEPS, "clock", "escalate_to_coordinator", "note"}, name
    info = table["information_request"]
    assert info["decide"] == info["outcome"] == "P15D" and info["clock"] == "24/7"
    assert "117(g)" in info["note"] and "15 calendar days" in info["note"]
    text = (REFERENCE_DIR / "referral-deadlines.yaml").read_text(encoding="utf-8")
    assert "de urgență" in text and "No statutory deadline for feedback" in text


def test_referral_deadlines_from_another_file(tmp_path: Path) -> None:
    fast = tmp_path / "fast.yaml"
    fast.write_text("version: 1\nlevels:\n  P1: {clock: 24/7, acknowledge: PT2S}\n", encoding="utf-8")
    assert reference.referral_deadlines(fast)["levels"]["P1"]["acknowledge"] == "PT2S"
    fast.write_text("version: 1\nlevels:\n  P1: {clock: 24/7, acknowledge: PT3S}\n", encoding="utf-8")
    assert reference.referral_deadlines(fast)["levels"]["P1"]["acknowledge"] == "PT3S"  # not cached
    assert reference.referral_deadlines() is reference.referral_deadlines()  # the default is
    assert reference.referral_deadlines()["levels"]["P1"]["acknowledge"] == "PT24H"


def test_referral_rejection_codes_read_well() -> None:
    codes = reference.rejection_codes()
    assert "necesită" in codes["CONSENT_REQUIRED"].message_ro and "consent" in codes["CONSENT_REQUIRED"].message_en
    assert "P2" in codes["CONSENT_REQUIRED"].description
    assert "referral-outcomes.yaml" in codes["OUTCOME_REQUIRED"].description
    assert "return_after" in codes["NOT_ALLOWED"].description


def test_audit_rejection_codes_read_well() -> None:
    codes = reference.rejection_codes()
    checkpoint, cosignature = codes["UNKNOWN_CHECKPOINT"], codes["BAD_COSIGNATURE"]
    assert "jurnalului" in checkpoint.message_ro and "checkpoint" in checkpoint.message_en
    assert "/checkpoints/{size}/cosignatures" in checkpoint.description
    assert "ă" in cosignature.message_ro and "cosignature" in cosignature.message_en
    assert "tlog-cosignature/v1" in cosignature.description


# --- topics ----------------------------------------------------------------------------


def test_topic_names_expand_templates() -> None:
    names = reference.topic_names(["das-bacau", "dgaspc-bc"])
    assert names == [
        "punte.ingress.das-bacau", "punte.ingress.dgaspc-bc", "punte.gateway",
        "punte.delivery.das-bacau", "punte.delivery.dgaspc-bc",
        "punte.cases", "punte.referrals", "punte.deadletter", "punte.access", "punte.audit",
    ]
    all_names = reference.topic_names(reference.institutions())
    assert len(all_names) == len(set(all_names)) == 2 * len(reference.institutions()) + 6
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,249}", name) for name in all_names)


def test_topic_partitions_are_those_of_topics_yaml() -> None:
    assert reference.topic_partitions(["isj-bc"]) == [
        ("punte.ingress.isj-bc", 1), ("punte.gateway", 3), ("punte.delivery.isj-bc", 1), ("punte.cases", 3),
        ("punte.referrals", 3), ("punte.deadletter", 1), ("punte.access", 1), ("punte.audit", 1),
    ]


def test_ingress_and_delivery_topics() -> None:
    assert reference.ingress_topic("spas-colonesti") == "punte.ingress.spas-colonesti"
    assert reference.delivery_topic("spas-colonesti") == "punte.delivery.spas-colonesti"
    for inst_id in reference.institutions():
        assert reference.owner_of_ingress_topic(reference.ingress_topic(inst_id)) == inst_id
    assert reference.owner_of_ingress_topic("punte.delivery.das-bacau") is None
    assert reference.owner_of_ingress_topic("punte.cases") is None
    assert reference.owner_of_ingress_topic("punte.ingress.nobody") is None
    assert reference.owner_of_ingress_topic("punte.ingress.") is None


def test_case_closure_reasons_are_codes_with_both_labels():
    reasons = reference.case_closure_reasons()
    assert "goals-met" in reasons and len(reasons) >= 4
    for code, labels in reasons.items():
        assert code == code.lower() and " " not in code
        assert labels["label_ro"] and labels["label_en"]
