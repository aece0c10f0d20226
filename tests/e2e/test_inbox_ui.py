"""The case managers' web inbox in a real browser (headless Chromium from the system, on a
360×740 phone screen) against the whole network as processes: a case manager signs in
through the page, sees a report sent by a school or the police arrive without reloading,
opens the referral, claims, accepts or rejects it with a reason and adds feedback,
acknowledges an alert, and reads it all in English too. Each step is checked as a person
sees it on the page, and again through the referral or inbox API."""
from __future__ import annotations

from typing import Any

import httpx
import pytest
from selenium.webdriver.support.ui import Select

from punte.stack import Stack
from tests.e2e.browser import WebPage, needs_chromium, password, send_report, token

LIVE_SECONDS = 45  # a report's way through intake, referral and notification

pytestmark = [pytest.mark.e2e, needs_chromium]


# ---- the network: reports as institutions send them, checks as case managers read them ----

def referral_seen_by(network: Stack, username: str, referral_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{network.url('referral')}/v1/referrals/{referral_id}",
                       headers={"Authorization": f"Bearer {token(network, username)}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def referral_command(network: Stack, username: str, referral_id: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{network.url('referral')}/v1/referrals/{referral_id}/commands", json=body,
                      headers={"Authorization": f"Bearer {token(network, username)}"})


def inbox_entry(network: Stack, username: str, notification_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{network.url('notification')}/inbox", params={"limit": 200},
                       headers={"Authorization": f"Bearer {token(network, username)}"})
    [entry] = [e for e in answer.json()["entries"] if e["notification_id"] == notification_id]
    return entry


# ---- the page ---------------------------------------------------------------------------------

class InboxPage(WebPage):
    """The inbox as a case manager uses it (the shared reading and doing: tests/e2e/browser.py)."""

    def __init__(self, driver, network: Stack) -> None:
        super().__init__(driver, network.url("notification") + "/ui")
        self.network = network

    def listed(self, attribute: str) -> list[str]:
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('#entries li.item'), e => e.getAttribute(arguments[0]));",
            attribute)

    def entry(self, case_id: str, kind: str = "referral-requested") -> str:
        return f'#entries li[data-case="{case_id}"][data-kind="{kind}"]'

    def sign_in(self, username: str) -> None:
        self.submit_sign_in(username, password(self.network, username))
        self.wait(lambda d: self.visible("#app-view"), what="the inbox after signing in")
        self.wait(lambda d: "on" in (self.attribute("#live", "class") or "").split(), what="the live stream")
        self.wait(lambda d: self.text("#inbox-summary"), what="the inbox loaded")

    def state_is(self, state: str) -> None:
        self.wait(lambda d: self.attribute("#ref-state", "data-state") == state, what=f"state {state}")


@pytest.fixture
def page(browser, network: Stack) -> InboxPage:
    inbox = InboxPage(browser, network)
    inbox.open_fresh()
    return inbox


# ---- the tests -------------------------------------------------------------------------------

def test_a_school_report_arrives_live_and_the_lead_claims_accepts_and_gives_feedback(page: InboxPage):
    network = page.network
    assert page.text("#login-title") == "Autentificare responsabil de caz"
    assert page.fits_the_screen()
    page.screenshot("login-ro.png")
    page.sign_in("cm.spas-colonesti")
    assert "Manager de caz" in page.text("#whoami") and page.text("#live") == "În direct"
    page.driver.execute_script("window.punteNotReloaded = true")

    sent = send_report(network, "isj-bc", ["school_absenteeism"], role="school-counsellor", channel="school")
    card = page.entry(sent["case_id"])
    page.wait(lambda d: page.visible(card), LIVE_SECONDS, "the school's report, live in the lead's inbox")
    assert page.driver.execute_script("return window.punteNotReloaded === true"), "no reload"
    shown = page.text(card)
    assert "Trimitere nouă" in shown and "Necitit" in shown and "P2" in shown and sent["case_id"] in shown
    assert int(page.text("#unread-count")) >= 1
    assert page.fits_the_screen()
    page.screenshot("inbox-ro.png")

    referral_id = page.attribute(card, "data-referral")
    notification_id = page.attribute(card, "data-id")
    page.click(card + " button.open")
    page.state_is("requested")
    assert page.text("#ref-title") == f"Trimiterea {referral_id}"
    assert "Trimisă" in page.text("#ref-state") and "ISJ" in page.text("#ref-from")
    assert page.text("#ref-owner") == "Nepreluată" and not page.visible("#ref-dnc")
    assert page.fits_the_screen()
    page.screenshot("referral-open.png", full_page=True)

    page.click("#do-claim")
    page.wait_text("#ref-message", "Ați preluat trimiterea.")
    assert page.text("#ref-owner") == "cm.spas-colonesti" and not page.visible("#do-claim")
    page.click("#do-accept")
    page.state_is("accepted")
    assert page.text("#ref-message") == "Trimiterea a fost acceptată."
    assert "Acceptată" in page.text("#ref-state") and not page.visible("#do-accept")
    note = "Evaluarea inițială este programată; școala va fi anunțată."
    page.find("#note-text").send_keys(note)
    page.click("#note-form button[type=submit]")
    page.wait_text("#ref-history", f"Notă: {note}")
    history = page.text("#ref-history")
    assert history.index("Preluată") < history.index("Acceptată (Trimisă → Acceptată)") < history.index("Notă")

    seen = referral_seen_by(network, "cm.spas-colonesti", referral_id)
    assert seen["state"] == "accepted" and seen["owner"] == "cm.spas-colonesti"
    assert [h["command"] for h in seen["history"]] == ["claim", "accept", "note"]
    assert seen["history"][-1]["note"] == note
    referrer = referral_seen_by(network, "cm.isj-bc", referral_id)
    assert referrer["history"][-1]["note"] == note, "the school reads the feedback"
    assert inbox_entry(network, "cm.spas-colonesti", notification_id)["read_at"], "opening it read it"

    page.click("#back")
    page.wait(lambda d: page.visible("#app-view"))
    assert "Necitit" not in page.text(card)


def test_a_police_alert_is_acknowledged_and_its_referral_rejected_with_a_reason(page: InboxPage):
    network = page.network
    page.sign_in("cm.dgaspc-bc")
    sent = send_report(network, "ipj-bc", ["domestic_violence"], role="police-officer", channel="police-patrol",
                       danger=True, household={"domestic_violence": True})
    assert sent["urgency"] == "P0"
    card = page.entry(sent["case_id"])
    page.wait(lambda d: page.visible(card), LIVE_SECONDS, "the police alert, live in the DGASPC inbox")
    assert "NU contactați familia" in page.text(card + " .dnc")
    assert page.text(card + " .badge.P0") == "P0"
    notification_id = page.attribute(card, "data-id")
    referral_id = page.attribute(card, "data-referral")

    page.click(card + " button.ack")
    page.wait_text(card + " .acked", "Preluat de cm.dgaspc-bc")
    assert page.text("#app-message") == "Alerta a fost confirmată."
    assert not page.find_all(card + " button.ack") and "Necitit" not in page.text(card)
    acknowledged = inbox_entry(network, "cm.dgaspc-bc", notification_id)
    assert acknowledged["acknowledged_by"] == "cm.dgaspc-bc" and acknowledged["acknowledged_at"]

    page.click(card + " button.open")
    page.state_is("requested")
    assert "NU contactați familia" in page.text("#ref-dnc")
    # A colleague confirms receipt in the meantime: the page's own try is refused, with the
    # referral service's reason, and the page shows the referral as it now stands.
    assert referral_command(network, "cm.dgaspc-bc", referral_id, command="acknowledge").status_code == 200
    page.click("#do-acknowledge")
    page.wait_text("#ref-message", "Operația nu este permisă în starea curentă a trimiterii sau a cazului.")
    assert "error" in page.attribute("#ref-message", "class").split()
    page.state_is("received")

    page.click("#do-reject")
    Select(page.find("#reject-code")).select_by_value("not-competent")
    page.find("#reject-detail").send_keys("Familia s-a mutat în județul Neamț.")
    assert page.fits_the_screen()
    page.click("#reject-form button[type=submit]")
    page.state_is("rejected")
    assert page.text("#ref-message").startswith("Trimiterea a fost refuzată")
    # The reason is the catalogue's code, shown by its label; the details are a note in the case file.
    assert "Motiv: Nu este de competența instituției noastre" in page.text("#ref-history")
    assert "Notă: Familia s-a mutat în județul Neamț." in page.text("#ref-history")
    assert not page.visible("#ref-actions")
    page.screenshot("referral-rejected.png", full_page=True)

    seen = referral_seen_by(network, "cm.ipj-bc", referral_id)
    assert seen["state"] == "rejected" and seen["do_not_contact"] is True
    [rejected] = [h for h in seen["history"] if h["command"] == "reject"]
    assert rejected["reason"] == "not-competent" and rejected["note"] == "Familia s-a mutat în județul Neamț."


def test_the_page_fits_a_phone_and_speaks_english(page: InboxPage):
    network = page.network
    page.sign_in("cm.dgaspc-bc")
    sent = send_report(network, "ipj-bc", ["domestic_violence"], role="police-officer", channel="police-patrol",
                       household={"domestic_violence": True})
    card = page.entry(sent["case_id"])
    page.wait(lambda d: page.visible(card), LIVE_SECONDS, "the police report, live")
    assert page.fits_the_screen()
    assert sent["urgency"] == "P1"

    Select(page.find("#f-urgency")).select_by_value("P0")
    page.wait(lambda d: not page.find_all(card) and all("P0" in c for c in page.listed("class")),
              what="only P0 entries")
    Select(page.find("#f-urgency")).select_by_value("")
    Select(page.find("#f-kind")).select_by_value("referral-requested")
    page.wait(lambda d: page.find_all(card) and set(page.listed("data-kind")) == {"referral-requested"},
              what="only new referrals")
    Select(page.find("#f-kind")).select_by_value("")
    page.click("#f-unread")
    page.wait(lambda d: page.find_all(card) and not page.find_all("#entries li.item:not(.unread)"),
              what="only unread entries")
    page.click("#f-unread")
    page.click("#tab-referrals")
    page.wait(lambda d: page.visible(f'#referrals li[data-referral="{page.attribute(card, "data-referral")}"]'))
    assert page.fits_the_screen()
    page.click("#tab-inbox")

    page.click("#lang")
    page.wait_text("#tab-inbox", "Notifications")
    assert page.driver.execute_script("return document.documentElement.lang") == "en"
    assert page.text(".brand h1") == "Case manager's inbox" and page.text("#logout") == "Sign out"
    shown = page.text(card)
    assert "New referral" in shown and "Do NOT contact the household" in shown and "Open the referral" in shown
    assert "Trimitere" not in shown
    assert page.text("#live") == "Live" and page.text("#tab-referrals") == "Referrals to us"
    page.driver.refresh()  # the choice of language stays; so does the session (this tab)
    page.wait_text("#tab-inbox", "Notifications")
    page.wait(lambda d: page.visible(card))
    assert page.fits_the_screen()
    page.screenshot("inbox-en.png")

    referral_id = page.attribute(card, "data-referral")
    page.click(card + " button.open")
    page.state_is("requested")
    assert page.text("#ref-title") == f"Referral {referral_id}"
    assert "Do NOT contact the household" in page.text("#ref-dnc")
    assert "Requested" in page.text("#ref-state") and page.text("#do-accept") == "Accept"
    # Accepted elsewhere meanwhile: the refusal reads in English too.
    assert referral_command(network, "cm.dgaspc-bc", referral_id, command="accept").status_code == 200
    page.click("#do-reject")
    Select(page.find("#reject-code")).select_by_value("no-capacity")
    page.click("#reject-form button[type=submit]")
    page.wait_text("#ref-message", "The operation is not allowed in the current state of the referral or case.")
    page.state_is("accepted")
    assert "Accepted" in page.text("#ref-state") and page.visible("#do-start")
    assert page.fits_the_screen()
    assert referral_seen_by(network, "cm.dgaspc-bc", referral_id)["state"] == "accepted"
