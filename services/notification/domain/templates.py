"""The e-mail and SMS a notice becomes, Romanian first.

Pure and deliberately narrow: the only inputs are the kind of notice, the urgency, the two
summaries (built by ``messages.summarise`` from kind, urgency, categories and case id), the
case id, a link to the institution's inbox, an optional deadline and the do-not-contact
flag. A name, CNP, address or child pseudonym has no parameter to arrive through; the
details stay behind the link, where reading them is authenticated and audited. As a
second line of defence a text that still carries a CNP-like number is refused."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from services.notification.domain.messages import DO_NOT_CONTACT, HEADLINES

URGENCIES = ("P0", "P1", "P2", "P3")
# How each urgency reads at the top of an e-mail (RO, EN).
URGENCY_LINES: dict[str, tuple[str, str]] = {
    "P0": ("URGENȚĂ P0: pericol iminent, acționați imediat.", "EMERGENCY P0: imminent danger, act now."),
    "P1": ("Urgență P1: acționați în aceeași zi.", "Urgent P1: act the same day."),
    "P2": ("Prioritate P2.", "Priority P2."),
    "P3": ("Prioritate P3.", "Priority P3."),
}
SMS_LIMIT = 160  # one GSM 03.38 segment
EN_SEPARATOR = "— English —"

_CNP = re.compile(r"(?<!\d)[1-9]\d{12}(?!\d)")
# One absolute http(s) URL, in the characters RFC 3986 allows (so ASCII, no spaces).
_LINK = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# GSM 03.38: the ASCII characters outside its basic table cost two septets (extension
# table) or cannot be sent at all (the backtick, replaced).
_GSM_EXTENSION = set("[]{}\\^~|")
_PUNCTUATION = str.maketrans({
    "—": "-", "–": "-", "„": '"', "”": '"', "“": '"', "«": '"', "»": '"', "’": "'", "‘": "'",
    "…": "...", "`": "'", "\u00a0": " ",
})


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str


def _guard(case_id: str, *texts: str | None) -> None:
    """Any 13-digit number shaped like a CNP is refused, valid control digit or not (test
    data and typos leak as surely as the real thing). The case id is left out: its hex may
    happen to be all digits."""
    for text in texts:
        if text and _CNP.search(text.replace(case_id, " ")):
            raise ValueError("a notification text carries a CNP-like number: it never leaves the case file")


def _check(notice_kind: str, urgency: str, case_id: str, link: str) -> None:
    if urgency not in URGENCIES:
        raise ValueError(f"unknown urgency {urgency!r}")
    if notice_kind not in HEADLINES:
        raise ValueError(f"unknown notice kind {notice_kind!r}")
    if not case_id or any(c.isspace() for c in case_id):
        raise ValueError("the case id must be one token")
    if not _LINK.fullmatch(link):
        raise ValueError("the link must be one http(s) URL")


def render(notice_kind: str, urgency: str, summary_ro: str, summary_en: str, case_id: str, link: str,
           deadline: str | None = None, do_not_contact: bool = False) -> Rendered:
    """Subject "[Punte P1] Trimitere nouă / New referral · case-…"; the body in Romanian,
    then "— English —" and the same in English."""
    _check(notice_kind, urgency, case_id, link)
    _guard(case_id, summary_ro, summary_en, deadline)
    headline_ro, headline_en = HEADLINES[notice_kind]
    urgent_ro, urgent_en = URGENCY_LINES[urgency]
    subject = f"[Punte {urgency}] {headline_ro} / {headline_en} · {case_id}"

    ro = [urgent_ro, "", summary_ro.strip(), ""]
    en = [urgent_en, "", summary_en.strip(), ""]
    if deadline:
        ro.append(f"Termen: {deadline}")
        en.append(f"Deadline: {deadline}")
    if do_not_contact:
        ro.append(f"ATENȚIE: {DO_NOT_CONTACT[0]} Contactul poate pune copilul în pericol.")
        en.append(f"WARNING: {DO_NOT_CONTACT[1]} Contact may put the child at risk.")
    if deadline or do_not_contact:
        ro.append("")
        en.append("")
    ro += [f"Cazul {case_id} în inboxul Punte:", link, "",
           "Detaliile cazului sunt doar în Punte; nu le trimiteți prin e-mail sau SMS.",
           "Mesaj automat, nu răspundeți la acest e-mail."]
    en += [f"Case {case_id} in the Punte inbox:", link, "",
           "Case details stay in Punte; do not send them by e-mail or SMS.",
           "Automated message, please do not reply."]
    text = "\n".join([*ro, "", EN_SEPARATOR, "", *en]) + "\n"
    return Rendered(subject=subject, text=text)


def gsm_ascii(text: str) -> str:
    """Romanian (and other Latin) text as plain ASCII: ă→a, â→a, î→i, ș/ş→s, ț/ţ→t, dashes
    and quotes to their ASCII forms; anything else outside ASCII is dropped."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_PUNCTUATION))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return stripped.encode("ascii", "ignore").decode("ascii")


def gsm_length(text: str) -> int:
    """Septets the text takes in GSM 03.38 (extension-table characters count twice)."""
    return sum(2 if c in _GSM_EXTENSION else 1 for c in text)


def sms_text(notice_kind: str, urgency: str, case_id: str, link: str, deadline: str | None = None,
             do_not_contact: bool = False) -> str:
    """One SMS segment, Romanian only, plain ASCII, e.g.
    "Punte P1: Trimitere noua. Caz case-…. Termen 2025-03-01 12:00. NU contactati familia. https://…".

    The urgency, case id, do-not-contact warning and link always fit (else ValueError: the
    link is too long); then the deadline; the headline is shortened to what remains. No
    risk category: an SMS shows on a locked screen."""
    _check(notice_kind, urgency, case_id, link)
    _guard(case_id, deadline)
    head = f"Punte {urgency}"
    case = f"Caz {case_id}."
    warn = gsm_ascii(DO_NOT_CONTACT[0]) if do_not_contact else ""
    when = f"Termen {gsm_ascii(deadline)}." if deadline else ""
    headline = gsm_ascii(HEADLINES[notice_kind][0])

    def join(headline: str, when: str) -> str:
        first = f"{head}: {headline}." if headline else f"{head}."
        return " ".join(part for part in (first, case, when, warn, link) if part)

    if gsm_length(join("", "")) > SMS_LIMIT:
        raise ValueError("the link is too long for an SMS")
    if gsm_length(join("", when)) > SMS_LIMIT:
        when = ""
    room = SMS_LIMIT - gsm_length(join("", when)) - 2  # ": " once there is a headline
    if room < len(headline):
        words: list[str] = []
        for word in headline.split():
            if len(" ".join([*words, word])) > room:
                break
            words.append(word)
        headline = " ".join(words)
    text = join(headline, when)
    assert gsm_length(text) <= SMS_LIMIT and text.isascii()
    return text


@dataclass(frozen=True)
class DigestItem:
    urgency: str
    summary_ro: str
    summary_en: str
    case_id: str
    deadline: str | None = None
    do_not_contact: bool = False


def render_digest(items: list[DigestItem], link: str) -> Rendered:
    """Several non-urgent notices in one e-mail: one line each, Romanian then English,
    the inbox link once."""
    if not items:
        raise ValueError("a digest needs at least one notice")
    if not _LINK.fullmatch(link):
        raise ValueError("the link must be one http(s) URL")
    for item in items:
        if item.urgency not in URGENCIES:
            raise ValueError(f"unknown urgency {item.urgency!r}")
        _guard(item.case_id, item.summary_ro, item.summary_en, item.deadline)
    count = len(items)
    subject = f"[Punte] Rezumat: {count} notificări noi / Digest: {count} new notifications"

    def lines(summary: str, deadline_word: str, warn: str) -> list[str]:
        out = []
        for item in items:
            text = getattr(item, summary).strip()
            if item.deadline:
                text += f" {deadline_word}: {item.deadline}."
            if item.do_not_contact and warn not in text:
                text += f" {warn}"
            out.append(f"- {text}")
        return out

    ro = [f"{count} notificări noi în inboxul Punte:", "",
          *lines("summary_ro", "Termen", DO_NOT_CONTACT[0]), "", "Inboxul Punte:", link, "",
          "Detaliile cazurilor sunt doar în Punte; nu le trimiteți prin e-mail sau SMS.",
          "Mesaj automat, nu răspundeți la acest e-mail."]
    en = [f"{count} new notifications in the Punte inbox:", "",
          *lines("summary_en", "Deadline", DO_NOT_CONTACT[1]), "", "The Punte inbox:", link, "",
          "Case details stay in Punte; do not send them by e-mail or SMS.",
          "Automated message, please do not reply."]
    return Rendered(subject=subject, text="\n".join([*ro, "", EN_SEPARATOR, "", *en]) + "\n")
