"""The need-to-know matrix: one case with risks of every group the routing sends to
different kinds of institution (the police, public health, schools, social services, the
DGASPC), and, for every institution taking part, every path by which the network shows it
the case: the read APIs (intake and referral), its inbox, the web inbox's API, its delivery
topic, its webhook, its people's e-mails and SMS. Each must show exactly the categories
contracts/reference/need-to-know.yaml gives the institution's kind, and messages to
people never name a special category (GDPR art. 9)."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml

from contracts import access
from contracts.reference import institutions, risk_categories
from punte.mailbox import messages as mailbox_messages
from punte.stack import Stack
from runtime.kafka import make_producer
from tests.e2e.conftest import Deliveries, WebhookReceiver, institution_system, wait_until
from tests.e2e.test_access_matrix import bearer, minter

# On the session's broker: Tansu, and Apache Kafka with --broker kafka (decision 0031).
pytestmark = [pytest.mark.e2e, pytest.mark.broker]

REPORTER = "spas-colonesti"
# Abuse (police, DGASPC), health (public health), education (schools), poverty and violence.
CATEGORIES = ("sexual_abuse", "health_risk", "school_absenteeism", "extreme_poverty", "domestic_violence")


def labels(category: str) -> tuple[str, str]:
    known = risk_categories()[category]
    return known.label_ro, known.label_en


def people_of(recipients_file: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(e-mail address -> institution, phone -> institution) from the recipients file."""
    config = yaml.safe_load(recipients_file.read_text(encoding="utf-8"))
    emails = {p["email"]: p["institution"] for p in config["people"].values() if p.get("email")}
    emails |= {i["team_email"]: inst for inst, i in config["institutions"].items() if i.get("team_email")}
    phones = {p["phone"]: p["institution"] for p in config["people"].values() if p.get("phone")}
    return emails, phones


async def test_every_path_shows_each_institution_only_the_categories_its_kind_may_know(
        network: Stack, webhook_receiver: WebhookReceiver):
    producer = make_producer(network.kafka_bootstrap)
    await producer.start()
    deliveries = Deliveries(network.kafka_bootstrap)
    await deliveries.start()
    issuer = minter(network)
    try:
        reporter = institution_system(network, REPORTER, producer)
        await reporter.send(reporter.report({
            "reporter": {"institution": REPORTER, "role": "social-worker"}, "channel": "social-worker",
            "child": {"cnp": "6150911048871", "uat_siruta": 21891, "county": "BC"},
            "risks": [{"category": c} for c in CATEGORIES], "description": "Date sintetice (need to know).",
            "immediate_danger": False,
        }))

        async def informed():
            """the lead was told of the case"""
            return [n for who, n in deliveries.notifications() if who == "dgaspc-bc"
                    and set(n["categories"]) == set(CATEGORIES)]
        [first, *_] = await wait_until(informed)
        case_id = first["case_id"]
        lead = bearer(issuer, "dgaspc-bc", "case-manager")
        async with httpx.AsyncClient(timeout=10) as client:
            case = (await client.get(f"{network.url('referral')}/v1/cases/{case_id}", headers=lead)).json()
        participants = sorted(case["participants"])
        kinds = {institutions()[p].kind for p in participants}
        # The routing must put restricted kinds in the case, or the matrix proves little.
        assert {"IPJ", "DSP"} <= kinds, participants

        async def everyone_told():
            """every participant had its notification"""
            told = {who for who, n in deliveries.notifications() if n["case_id"] == case_id}
            return set(participants) <= told | {"dgaspc-bc"}
        await wait_until(everyone_told)
        wrong: list[str] = []
        seen: dict[str, set[str]] = {}

        def compare(path: str, institution: str, shown, exact: bool = True) -> None:
            expected = set(access.visible_categories(institution, CATEGORIES))
            shown = set(shown)
            seen.setdefault(institution, set()).update(shown)
            if (shown != expected) if exact else not shown <= expected:
                wrong.append(f"{institution} ({institutions()[institution].kind}) {path}: "
                             f"shown {sorted(shown)}, may know {sorted(expected)}")

        async with httpx.AsyncClient(timeout=10) as client:
            for institution in participants:
                who = bearer(issuer, institution, "case-manager")
                for _, n in ((w, n) for w, n in deliveries.notifications() if w == institution
                             and n["case_id"] == case_id):
                    compare(f"delivery topic ({n['kind']})", institution, n["categories"])
                inbox = (await client.get(f"{network.url('notification')}/inbox?limit=200", headers=who)).json()
                for entry in inbox["entries"]:
                    if entry["case_id"] == case_id:
                        compare(f"inbox ({entry['kind']})", institution, entry["categories"])
                intake_case = await client.get(f"{network.url('intake')}/v1/cases/{case_id}", headers=who)
                if intake_case.status_code == 200:
                    compare("intake GET /v1/cases", institution, intake_case.json()["categories"])
                    for held in intake_case.json()["reports"]:
                        compare("intake GET /v1/cases reports", institution, held["categories"], exact=False)
                referral_case = await client.get(f"{network.url('referral')}/v1/cases/{case_id}", headers=who)
                if referral_case.status_code == 200:
                    compare("referral GET /v1/cases", institution, referral_case.json()["categories"])
                    for step in referral_case.json()["plan"]:
                        compare("referral GET /v1/cases plan", institution, step["categories"], exact=False)
                        one = await client.get(f"{network.url('referral')}/v1/referrals/{step['referral_id']}",
                                               headers=who)
                        if one.status_code == 200:
                            compare("referral GET /v1/referrals/{id}", institution, one.json()["categories"])
                page = await client.get(f"{network.url('notification')}/ui/api/referrals/inbox", headers=who)
                for step in page.json() if page.status_code == 200 else []:
                    if step["case_id"] == case_id:
                        compare("web inbox /ui/api/referrals/inbox", institution, step["categories"])
        for hook in webhook_receiver.seen:
            body = json.loads(hook.body or b"{}")
            data = body.get("data", body)
            if isinstance(data, dict) and data.get("case_id") == case_id and data.get("recipient") in participants:
                compare("webhook", data["recipient"], data["categories"])
        # Messages to people: a category outside the kind's view is never named, and a
        # special category is never named at all.
        emails, phones = people_of(network.state.recipients_file)
        protected = [c for c in CATEGORIES if access.protected_in_messages(c)]
        assert protected, "the case must hold a special category"
        texts: list[tuple[str, str, str]] = []
        for mail in mailbox_messages(network.state.maildir):
            if case_id in str(mail.get("Subject", "")):
                for address in str(mail.get("To", "")).split(","):
                    institution = emails.get(address.strip())
                    if institution:
                        texts.append(("e-mail", institution, mail.get_content()))
        sms_file: Path = network.state.sms_file
        for line in sms_file.read_text(encoding="utf-8").splitlines() if sms_file.exists() else []:
            sms = json.loads(line)
            if case_id in sms["text"] and sms["to"] in phones:
                texts.append(("SMS", phones[sms["to"]], sms["text"]))
        assert any(channel == "e-mail" for channel, _, _ in texts), "no e-mail about the case was found"
        for channel, institution, text in texts:
            may_know = set(access.visible_categories(institution, CATEGORIES))
            for category in CATEGORIES:
                named = any(label in text for label in labels(category))
                if named and (category not in may_know or category in protected):
                    wrong.append(f"{institution} {channel} names {category}")
    finally:
        await deliveries.stop()
        await producer.stop()
    assert not wrong, "\n".join(wrong)
    # The matrix is not empty: each restricted kind was shown something, and not everything.
    police = next(p for p in participants if institutions()[p].kind == "IPJ")
    assert seen[police] and "health_risk" not in seen[police]
