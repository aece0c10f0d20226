"""The short summaries an institution's people read, in Romanian and English.

Built only from the kind of notice, the urgency, the risk categories and the case id:
never a name, CNP, address or child pseudonym, so a summary can travel to any inbox,
e-mail or SMS gateway without widening who knows who the child is."""
from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

# kind -> (Romanian, English) headline
HEADLINES: dict[str, tuple[str, str]] = {
    "case-informed": ("Caz nou, spre informare", "New case, for information"),
    "referral-requested": ("Trimitere nouă", "New referral"),
    "referral-accepted": ("Trimitere acceptată", "Referral accepted"),
    "report-added": ("Raport nou la un caz deschis", "New report on an open case"),
    "referral-updated": ("Trimitere actualizată", "Referral updated"),
    "referral-returned": ("Trimitere returnată fără răspuns", "Referral returned unanswered"),
    "referral-overdue": ("Termen depășit", "Deadline missed"),
    "case-accessed": ("Cazul a fost consultat de altă instituție", "The case was opened by another institution"),
}
# A referral's states and steps, as people read them.
DETAILS: dict[str, tuple[str, str]] = {
    "requested": ("trimisă", "requested"), "received": ("primită", "received"),
    "accepted": ("acceptată", "accepted"), "rejected": ("refuzată", "rejected"),
    "in-progress": ("în lucru", "in progress"), "on-hold": ("suspendată", "on hold"),
    "completed": ("finalizată", "completed"), "failed": ("eșuată", "failed"),
    "cancelled": ("anulată", "cancelled"), "entered-in-error": ("introdusă din greșeală", "entered in error"),
    "acknowledge": ("confirmarea primirii", "acknowledgement"), "decide": ("decizia", "decision"),
    "first_contact": ("primul contact", "first contact"), "outcome": ("rezultatul", "outcome"),
}
DO_NOT_CONTACT = ("NU contactați familia.", "Do NOT contact the household.")
# In place of a special category (health, sexual abuse) in a message that leaves Punte.
PROTECTED = ("categorie protejată (detalii în Punte)", "protected category (details in Punte)")
# A step added a note to the case file: said, never quoted.
NOTE_ADDED = ("notă nouă în dosar", "a new note in the case file")
# When none of the case's categories is the recipient's to know.
NOT_YOURS = ("risc semnalat (detalii la instituția responsabilă)", "risk reported (details with the lead institution)")


class Labelled(Protocol):
    label_ro: str
    label_en: str


@dataclass(frozen=True)
class Summary:
    ro: str
    en: str


def _in_sentence(label: str) -> str:
    # Labels are written to stand alone ("Neglijare"); mid-sentence they read lower case.
    return label[:1].lower() + label[1:]


def summarise(kind: str, urgency: str, categories: Iterable[str], case_id: str,
              labels: Mapping[str, Labelled], do_not_contact: bool = False,
              detail: str | None = None, protected: Collection[str] = (),
              purpose: Labelled | None = None, reason: Labelled | None = None,
              note_added: bool = False) -> Summary:
    """E.g. "Trimitere nouă (P1): neglijare. Caz case-…" / "New referral (P1): neglect. Case case-…".
    Categories in ``protected`` read as one "protected category" (for messages that leave
    Punte); no categories at all read as a reported risk. ``purpose``: the labels of why a
    case was read (case-accessed), after the detail; ``reason``: the labels of a referral
    step's reason code (referral-reasons.yaml); ``note_added``: that the step added a note
    to the case file (whose text never comes here)."""
    headline_ro, headline_en = HEADLINES[kind]
    ids = list(dict.fromkeys(categories))
    shown = [c for c in ids if c not in protected]
    hidden = len(shown) < len(ids)
    # An id missing from the reference data (a newer contract) still shows, as its id.
    ro_parts = [_in_sentence(labels[c].label_ro) if c in labels else c for c in shown]
    en_parts = [_in_sentence(labels[c].label_en) if c in labels else c for c in shown]
    if hidden:
        ro_parts.append(PROTECTED[0])
        en_parts.append(PROTECTED[1])
    if not ids:
        ro_parts, en_parts = [NOT_YOURS[0]], [NOT_YOURS[1]]
    ro, en = ", ".join(ro_parts), ", ".join(en_parts)
    warn_ro, warn_en = (f" {DO_NOT_CONTACT[0]}", f" {DO_NOT_CONTACT[1]}") if do_not_contact else ("", "")
    if detail:
        detail_ro, detail_en = DETAILS.get(detail, (detail, detail))
        headline_ro, headline_en = f"{headline_ro} — {detail_ro}", f"{headline_en} — {detail_en}"
    if purpose is not None:
        headline_ro = f"{headline_ro}; scopul: {purpose.label_ro}"
        headline_en = f"{headline_en}; purpose: {purpose.label_en}"
    if reason is not None:
        headline_ro = f"{headline_ro}; motivul: {_in_sentence(reason.label_ro)}"
        headline_en = f"{headline_en}; reason: {_in_sentence(reason.label_en)}"
    if note_added:
        headline_ro = f"{headline_ro}; {NOTE_ADDED[0]}"
        headline_en = f"{headline_en}; {NOTE_ADDED[1]}"
    return Summary(
        ro=f"{headline_ro} ({urgency}): {ro}. Caz {case_id}.{warn_ro}".rstrip("."),
        en=f"{headline_en} ({urgency}): {en}. Case {case_id}.{warn_en}".rstrip("."),
    )
