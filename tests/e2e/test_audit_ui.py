"""The auditors' web page in a real browser (headless Chromium from the system, on a 360×740
phone screen) against the whole network as processes: an auditor is refused with a wrong
password, signs in, is stopped from searching without a purpose, searches a case a school
has just reported and follows its timeline, verifies the trail, issues a checkpoint, reads
it all in English and signs out; a case manager is refused, and an expired session ends.
Each step is checked as a person sees it on the page, and again through the audit API."""
from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from selenium.webdriver.support.ui import Select

from contracts.events import EventType
from contracts.reference import rejection_codes
from punte.stack import Stack
from services.audit.domain import checkpoint
from tests.e2e.browser import WebPage, needs_chromium, password, send_report, token

pytestmark = [pytest.mark.e2e, needs_chromium]

TRAIL_SECONDS = 45  # a report's way through intake and referral into the audit trail
# The purpose: a code chosen from the list, and the auditor's own words for the trail.
CODE = "audit-inspection"
PURPOSE = "control tematic ISJ, verificare sesizare școală"  # ș, ț, ă cannot go raw in a header
PURPOSE_EN = "thematic inspection, test"


# ---- the audit API, as an auditor's own program reads it ------------------------------------

def audit_api(network: Stack, path: str, method: str = "GET", purpose: str = "audit-inspection; verificare%20e2e",
              **params: Any) -> httpx.Response:
    answer = httpx.request(method, f"{network.url('audit')}/{path}", params=params, timeout=30,
                           headers={"Authorization": f"Bearer {token(network, 'auditor')}",
                                    "X-Punte-Purpose": purpose})
    assert answer.status_code == 200, answer.text
    return answer


def recorded(network: Stack, entry: dict[str, Any]) -> dict[str, Any]:
    """The message an audit entry recorded, opened by break-glass (decision 0016: the entry
    holds its digest only), for a data protection officer's check."""
    opened = audit_api(network, f"entries/{entry['seq']}/value", method="POST", purpose="dpo-request")
    return json.loads(base64.b64decode(opened.json()["value_base64"]))


# ---- the page ----------------------------------------------------------------------------------

class AuditPage(WebPage):
    """The auditors' page as an auditor uses it (the shared reading and doing: tests/e2e/browser.py)."""

    def __init__(self, driver, network: Stack) -> None:
        super().__init__(driver, network.url("audit") + "/ui")
        self.network = network

    def sign_in(self, username: str) -> None:
        self.submit_sign_in(username, password(self.network, username))
        self.wait(lambda d: self.visible("#app-view"), what="the page after signing in")
        # The log's verifier key arrives by itself after signing in.
        self.wait(lambda d: "--key '…'" not in self.text("#verify-command"), what="the log's key")

    def search(self, purpose: str | None = None, code: str | None = None, **fields: str) -> None:
        """Search with ``code`` chosen from the purposes (once the list has come) and
        ``purpose`` as the details."""
        if code is not None:
            self.wait(lambda d: self.driver.execute_script(
                "return !!document.querySelector('#purpose option[value=\"' + arguments[0] + '\"]')", code),
                what="the list of purposes")
            Select(self.find("#purpose")).select_by_value(code)
        if purpose is not None:
            self.find("#purpose-text").clear()
            self.find("#purpose-text").send_keys(purpose)
        for name, value in fields.items():
            self.find(f"#f-{name}").clear()
            self.find(f"#f-{name}").send_keys(value)
        self.click("#search-form button[type=submit]")

    def rows(self, column: int) -> list[str]:
        """One column of the results as shown (1: seq … 6: case)."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#results-table tbody tr td:nth-child(' + arguments[0] "
            "+ ')'), e => e.innerText.trim());", column)

    def timeline(self) -> list[dict[str, str]]:
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#timeline li'), e => ({"
            "institution: e.querySelector('.badge').innerText, event: e.querySelector('.event').innerText,"
            "meta: e.querySelector('.meta').innerText}));")

    def selected_tab(self) -> str | None:
        return self.driver.execute_script(
            "var e = document.querySelector('[role=tab][aria-selected=true]'); return e && e.id;")

    def checkpoint_shown(self) -> str:
        """The signed note as the page shows it, to the last newline."""
        return self.driver.execute_script("return document.getElementById('checkpoint-text').textContent")

    def token_kept(self) -> str | None:
        return self.driver.execute_script("return sessionStorage.getItem('punte.audit.token')")


@pytest.fixture
def page(browser, network: Stack) -> AuditPage:
    audit = AuditPage(browser, network)
    audit.open_fresh()
    browser.get_log("browser")  # the console from here on
    return audit


@pytest.fixture(scope="module")
def case_id(network: Stack) -> str:
    """A case a school has just reported, once its opening and referral are in the trail."""
    sent = send_report(network, "isj-bc", ["school_absenteeism"], role="school-counsellor", channel="school")
    wanted = {EventType.CASE_OPENED.value, EventType.REFERRAL_REQUESTED.value}
    deadline = time.monotonic() + TRAIL_SECONDS
    while not wanted <= {s["event_type"] for s in audit_api(network, f"cases/{sent['case_id']}/timeline").json()}:
        assert time.monotonic() < deadline, "the case's opening and referral are not in the trail"
        time.sleep(0.3)
    return sent["case_id"]


# ---- the tests -------------------------------------------------------------------------------

def test_an_auditor_signs_in_searches_with_a_purpose_and_follows_a_case(page: AuditPage, case_id: str):
    network = page.network
    assert page.text("#login-title") == "Autentificare auditor"
    assert page.text(".brand h1") == "Jurnal de audit" and not page.visible("#logout")
    assert page.fits_the_screen()

    # A wrong password: the refusal the identity provider gave, and no way in.
    page.submit_sign_in("auditor", "nu-este-parola")
    page.wait_text("#login-message", "Utilizator sau parolă greșită.")
    assert "error" in page.attribute("#login-message", "class").split()
    assert not page.visible("#app-view") and page.token_kept() is None
    assert page.text("#login-form button[type=submit]") == "Intră"

    page.sign_in("auditor")
    assert not page.visible("#login-view") and not page.visible("#login-message") and page.visible("#logout")
    assert page.text("#whoami") == "Autentificat: Auditor"
    assert "warn" not in page.attribute("#whoami", "class").split()
    key = audit_api(network, "log-key").json()["verifier_key"]
    assert page.text("#log-key") == key
    assert page.text("#verify-command") == f"punte audit verify punte-audit.tar --key '{key}'"
    assert page.driver.execute_script("return document.activeElement.id") == "purpose"

    # No purpose: the page does not ask the API.
    page.search(case=case_id)
    page.wait_text("#app-message", "Completați scopul consultării înainte de a căuta.")
    assert "error" in page.attribute("#app-message", "class").split() and not page.visible("#results")

    # With a purpose: the case's entries, and the query itself on record, with that purpose.
    page.search(PURPOSE, CODE)
    page.wait(lambda d: page.visible("#results") and page.rows(1), what="the case's entries")
    assert not page.visible("#app-message")
    seqs = [int(s) for s in page.rows(1)]
    assert seqs == sorted(seqs) and set(page.rows(6)) == {case_id}
    assert page.text("#results-summary") == f"{len(seqs)} intrări (de la nr. {seqs[0]} la {seqs[-1]})."
    assert page.text("#page-label") == "Pagina 1" and page.find("#prev").get_attribute("disabled")
    shown_types = page.rows(3)
    assert {EventType.CASE_OPENED.value, EventType.REFERRAL_REQUESTED.value} <= set(shown_types)
    in_the_trail = {e["seq"]: e for e in audit_api(network, "entries", case_id=case_id).json()["entries"]}
    assert set(seqs) <= set(in_the_trail)
    assert shown_types == [in_the_trail[s]["event_type"] or in_the_trail[s]["topic"] for s in seqs]
    assert page.fits_the_screen()

    def purpose_on_record():
        access = audit_api(network, "entries", event_type=EventType.ACCESS.value, case_id=case_id,
                           actor="auditor").json()["entries"]
        return [e for e in access if e["purpose"] == CODE and e["value"]["state"] == "sealed"]
    # The auditor's own words are in the sealed access event: read back only by break-glass.
    # The test's own API reads of the case carry the same code (other words) and may reach
    # the trail first, so each entry of the code is opened once until the page's is there.
    opened: dict[int, str] = {}

    def page_search_on_record() -> bool:
        for entry in purpose_on_record():
            if entry["seq"] not in opened:
                opened[entry["seq"]] = recorded(network, entry)["purpose_text"]
        return PURPOSE in opened.values()
    page.wait(lambda d: page_search_on_record(), TRAIL_SECONDS, "the page's search on record with its purpose")

    # A case in the results opens its timeline: each step with the institution that took it.
    page.click("#results-table tbody tr:first-child button.link")
    page.wait(lambda d: page.text("#timeline-summary"), what="the case's timeline")
    assert page.selected_tab() == "tab-timeline" and not page.visible("#panel-search")
    assert page.find("#t-case").get_attribute("value") == case_id
    steps = page.timeline()
    institutions = {s["institution"] for s in steps}
    assert page.text("#timeline-summary") == (
        f"Cazul {case_id}: {len(steps)} evenimente, {len(institutions)} instituții.")
    answered = audit_api(network, f"cases/{case_id}/timeline").json()
    assert [s["event"] for s in steps] == [a["event_type"] or a["topic"] for a in answered[:len(steps)]]
    assert [s["institution"] for s in steps] == [a["institution"] or "punte" for a in answered[:len(steps)]]
    assert all(s["meta"].startswith(f"#{a['seq']} · ") for s, a in zip(steps, answered, strict=False))
    assert {EventType.CASE_OPENED.value, EventType.REFERRAL_REQUESTED.value} <= {s["event"] for s in steps}
    assert page.fits_the_screen()
    page.screenshot("auditor-ro.png", full_page=True)

    # The tabs answer the arrow keys.
    page.driver.execute_script("document.getElementById('tab-timeline').focus()")
    page.driver.switch_to.active_element.send_keys("\ue014")  # ArrowRight
    assert page.selected_tab() == "tab-verify" and page.visible("#panel-verify")
    page.driver.switch_to.active_element.send_keys("\ue012")  # ArrowLeft
    assert page.selected_tab() == "tab-timeline"
    # In the console: the wrong password's refusal, and none other (but that no checkpoint
    # exists yet, when the verification tab opened before the first one).
    assert page.console_errors("status of 401", "/checkpoints/latest - Failed to load resource: the server "
                               "responded with a status of 404") == []


def test_an_auditor_verifies_the_trail_issues_a_checkpoint_reads_it_in_english_and_signs_out(
        page: AuditPage, case_id: str):
    network = page.network
    page.sign_in("auditor")
    page.click("#tab-verify")
    page.wait(lambda d: page.text("#checkpoint-text"), what="the latest checkpoint (or that none exists)")

    # Verified means every message on the broker is recorded: let the audit catch up first.
    page.wait(lambda d: audit_api(network, "verify").json()["state"] == "verified",
              what="the trail caught up with the broker")
    page.click("#verify-run")
    page.wait(lambda d: page.visible("#verify-result"), what="the trail verified")
    assert page.text("#v-verified") == "DA" and "ok" in page.attribute("#v-verified", "class").split()
    assert page.text("#v-firstbad") == "—" and page.text("#v-gaps") == "—" and page.text("#v-problems") == "—"
    entries, size = int(page.text("#v-entries")), int(page.text("#v-size"))
    verified = audit_api(network, "verify").json()
    assert verified["verified"] and verified["entries"] >= entries and verified["tree_size"] >= size

    page.click("#checkpoint-issue")
    page.wait_text("#app-message", "Punct de control emis.")
    assert "ok" in page.attribute("#app-message", "class").split()
    # The checkpoint the page shows is signed by the log's key the page shows, and covers
    # at least what was just verified.
    name, public = checkpoint.parse_verifier_key(page.text("#log-key"))
    issued = checkpoint.verify_note(page.checkpoint_shown(), name, public)
    assert issued.size >= size
    latest = audit_api(network, "checkpoints/latest").text
    assert checkpoint.verify_note(latest, name, public).size >= issued.size
    assert page.fits_the_screen()

    # English: everything the page says, the messages it showed included.
    page.click("#lang")
    page.wait_text("#tab-verify", "Verification")
    assert page.driver.execute_script("return document.documentElement.lang") == "en"
    assert page.driver.title == "Punte — Audit trail / Jurnal de audit"
    assert page.text(".brand h1") == "Audit trail" and page.text("#logout") == "Sign out"
    assert page.text("#app-message") == "Checkpoint issued."
    assert page.text("#v-verified") == "YES" and page.text("#whoami") == "Signed in: Auditor"
    assert page.text("label[for=purpose]").startswith("Purpose of this consultation")
    assert page.text("#verify-result dt") == "Verified"
    assert page.fits_the_screen()
    page.screenshot("auditor-en.png", full_page=True)

    page.click("#tab-search")
    page.search(case=case_id)
    page.wait_text("#app-message", "Fill in the purpose before searching.")
    page.search(PURPOSE_EN, CODE)
    page.wait(lambda d: page.visible("#results") and page.rows(1), what="the case's entries")
    seqs = page.rows(1)
    assert page.text("#results-summary") == f"{len(seqs)} entries (seq {seqs[0]} to {seqs[-1]})."
    assert page.attribute("#results-table tbody td:nth-child(3)", "data-label") == "Event type"
    page.click("#results-table tbody tr:first-child button.link")
    page.wait_text("#timeline-summary", f"Case {case_id}: ")
    assert page.text("#tab-timeline") == "Case timeline" and page.fits_the_screen()

    # Signing out forgets the token and what the page showed; the language stays.
    page.click("#logout")
    page.wait(lambda d: page.visible("#login-form"), what="the sign-in form after signing out")
    assert not page.visible("#app-view") and not page.visible("#logout") and page.token_kept() is None
    assert page.text("#login-title") == "Auditor sign-in" and page.text("#whoami") == ""
    assert page.find("#password").get_attribute("value") == ""
    assert page.text("#timeline") == "" and not page.visible("#app-message")
    assert page.fits_the_screen()


def test_a_case_manager_is_refused_and_an_expired_session_signs_out(page: AuditPage):
    page.sign_in("cm.dgaspc-bc")
    assert "warn" in page.attribute("#whoami", "class").split()
    assert page.text("#whoami").endswith(
        "Atenție: contul nu are rolul de auditor; API-ul va refuza interogările.")
    page.search("verificare", "verification", case="case-0000000000000000")
    # The API's own refusal (contracts/reference/access.yaml: audit.search is the auditors'),
    # in the catalogue's words.
    page.wait_text("#app-message", rejection_codes()["FORBIDDEN"].message_ro)
    assert not page.visible("#results")

    # A token past its expiry: the page signs out by itself on opening.
    page.driver.execute_script("sessionStorage.setItem('punte.audit.token', 'a.eyJleHAiOjF9.b')")
    page.driver.refresh()
    page.wait_text("#login-message", "Sesiunea a expirat sau tokenul nu este valid. Autentificați-vă din nou.")
    assert not page.visible("#app-view") and page.token_kept() is None
    assert page.console_errors("403") == []
