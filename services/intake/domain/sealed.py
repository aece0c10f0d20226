"""Report v3: the opened sealed part joined to the clear part, read as the report v2 intake
assesses. The sealed plaintext is bound to its report by naming the report's ce_id and
its sender, which any JOSE library's sender can write; a sealed part copied from another
report, or from another institution's, is refused."""
from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from contracts.events import (
    ChildIdentityV2,
    ReportSubmittedV2,
    ReportSubmittedV3,
    Risk,
    SealedReport,
)
from runtime.schemas import schema
from services.intake.domain.errors import ReportRejected

SEALED_SCHEMA = "ro.punte.report.sealed.v3"


def read_sealed(plaintext: bytes) -> SealedReport:
    """The plaintext as its schema and model read it; SEALED_UNREADABLE when it is not
    JSON, SEALED_INVALID naming where and which rule (never the value) when it breaks them."""
    try:
        data: Any = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ReportRejected("SEALED_UNREADABLE", "the plaintext is not UTF-8 JSON") from None
    checker = schema(SEALED_SCHEMA)
    assert checker is not None, f"contracts/schemas/{SEALED_SCHEMA}.json is missing"
    problem = checker.problem(data)
    if problem is not None:
        raise ReportRejected("SEALED_INVALID", problem)
    try:
        return SealedReport.model_validate(data)
    except ValidationError as exc:  # what JSON Schema's `$` lets through (a trailing line break)
        first = exc.errors()[0]
        where = "/".join(str(p) for p in first["loc"]) or "(root)"
        raise ReportRejected("SEALED_INVALID", f"{where}: breaks {first['type']}") from None


def join(report: ReportSubmittedV3, sealed: SealedReport, event_id: str, sender: str | None) -> ReportSubmittedV2:
    """The whole report, once the sealed part is shown to be this report's."""
    if sealed.report.id != event_id or sealed.report.institution != sender:
        raise ReportRejected("SEALED_MISMATCH", "the sealed part names another report or sender")
    categories = [r.category for r in report.risks]
    if set(sealed.indicators) - set(categories):
        raise ReportRejected("SEALED_MISMATCH", "sealed indicators name a category the report does not")
    child = sealed.child
    return ReportSubmittedV2(
        reporter=report.reporter, channel=report.channel,
        child=ChildIdentityV2(cnp=child.cnp, given_name=child.given_name, family_name=child.family_name,
                              birth_date=child.birth_date, estimated_age_years=child.estimated_age_years,
                              sex=child.sex, uat_siruta=report.child.uat_siruta, county=report.child.county,
                              address=child.address),
        household=sealed.household, place_of_occurrence=report.place_of_occurrence,
        risks=[Risk(category=c, indicators=sealed.indicators.get(c, [])) for c in categories],
        description=sealed.description, immediate_danger=report.immediate_danger,
        already_informed=report.already_informed, observation_sheet=report.observation_sheet,
        occurred_at=report.occurred_at,
    )
