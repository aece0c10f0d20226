"""Intake's SQL for the person's rights: restrictions of cases, who rectified which
identity version and why, pseudonym aliases of corrected CNPs, and what the export reads."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.adapters.tables import case_reports, cases, identities, metadata, reports

# A case's restriction of processing (GDPR art. 18): the latest decision, with who took it.
case_restrictions = sa.Table(
    "case_restrictions", metadata,
    sa.Column("case_id", sa.Text, primary_key=True),
    sa.Column("restricted", sa.Boolean, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.Text, nullable=False),  # the person (token subject)
    sa.Column("institution", sa.Text, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
)

# An identity version added by a rectification (GDPR art. 16): who, for which institution, why.
identity_rectifications = sa.Table(
    "identity_rectifications", metadata,
    sa.Column("report_id", sa.Text, primary_key=True),  # identities.report_id of the version
    sa.Column("child_ref", sa.Text, nullable=False, index=True),
    sa.Column("case_id", sa.Text, nullable=False),
    sa.Column("rectified_by", sa.Text, nullable=False),
    sa.Column("institution", sa.Text, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("purpose_text", sa.Text, nullable=True),
    sa.Column("fields", sa.JSON, nullable=False),  # the names of the corrected fields
    sa.Column("rectified_at", sa.DateTime(timezone=True), nullable=False),
)

# The pseudonym a corrected CNP would give -> the child's pseudonym, which never changes.
pseudonym_aliases = sa.Table(
    "pseudonym_aliases", metadata,
    sa.Column("alias_ref", sa.Text, primary_key=True),
    sa.Column("child_ref", sa.Text, nullable=False, index=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


async def case_of(session: AsyncSession, case_id: str) -> sa.Row | None:
    return (await session.execute(sa.select(cases).where(cases.c.case_id == case_id))).first()


async def restriction_of(session: AsyncSession, case_id: str) -> sa.Row | None:
    return (await session.execute(
        sa.select(case_restrictions).where(case_restrictions.c.case_id == case_id))).first()


async def set_restriction(session: AsyncSession, case_id: str, *, restricted: bool, at: datetime,
                          by: str, institution: str, purpose: str) -> None:
    values = {"restricted": restricted, "decided_at": at, "decided_by": by, "institution": institution,
              "purpose": purpose}
    await session.execute(pg_insert(case_restrictions).values(case_id=case_id, **values)
                          .on_conflict_do_update(index_elements=["case_id"], set_=values))


async def record_rectification(session: AsyncSession, **values: object) -> None:
    await session.execute(sa.insert(identity_rectifications).values(**values))


async def add_alias(session: AsyncSession, alias_ref: str, child_ref: str, at: datetime) -> None:
    if alias_ref != child_ref:
        await session.execute(pg_insert(pseudonym_aliases).values(
            alias_ref=alias_ref, child_ref=child_ref, recorded_at=at).on_conflict_do_nothing())


async def resolve_aliases(session: AsyncSession, child_refs: Iterable[str]) -> dict[str, str]:
    """Each child's pseudonym for ``child_refs`` (itself unless a corrected CNP made it an alias)."""
    refs = sorted(set(child_refs))
    found = dict((await session.execute(
        sa.select(pseudonym_aliases.c.alias_ref, pseudonym_aliases.c.child_ref)
        .where(pseudonym_aliases.c.alias_ref.in_(refs)))).all()) if refs else {}
    return {ref: found.get(ref, ref) for ref in refs}


async def identity_versions(session: AsyncSession, child_ref: str) -> Sequence[sa.Row]:
    """Every identity version of the child, oldest first, with its rectification if it is one."""
    return (await session.execute(
        sa.select(identities, identity_rectifications.c.rectified_by, identity_rectifications.c.institution,
                  identity_rectifications.c.purpose, identity_rectifications.c.purpose_text,
                  identity_rectifications.c.fields, identity_rectifications.c.rectified_at)
        .outerjoin(identity_rectifications, identity_rectifications.c.report_id == identities.c.report_id)
        .where(identities.c.child_ref == child_ref).order_by(identities.c.version))).all()


async def cases_of_child(session: AsyncSession, child_ref: str) -> Sequence[sa.Row]:
    return (await session.execute(sa.select(cases).where(cases.c.child_ref == child_ref)
                                  .order_by(cases.c.opened_at))).all()


async def reports_of(session: AsyncSession, case_ids: Iterable[str]) -> Sequence[sa.Row]:
    """The reports the cases hold, with the outcome each sender was given."""
    return (await session.execute(
        sa.select(case_reports, reports.c.event_type, reports.c.outcome)
        .outerjoin(reports, sa.and_(reports.c.event_id == case_reports.c.report_id,
                                    reports.c.sender == case_reports.c.reporter))
        .where(case_reports.c.case_id.in_(list(case_ids))).order_by(case_reports.c.received_at))).all()


async def aliases_of(session: AsyncSession, child_ref: str) -> Sequence[sa.Row]:
    return (await session.execute(sa.select(pseudonym_aliases)
                                  .where(pseudonym_aliases.c.child_ref == child_ref))).all()
