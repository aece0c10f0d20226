"""What the browser tests share: headless Chromium from the system on a 360×740 phone
screen (the `browser` fixture in conftest.py starts it, one per test module), a page as a
person uses it (what they click and type, what they read), and the network as these
synchronous (Selenium) tests reach it: a token, a report from an institution's system.

Without Debian's chromium and chromedriver the browser tests are skipped, except under CI
(the CI environment variable set): there .ci/run installs them, so their absence fails."""
from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from contracts.events import EventType
from punte.institution import fetch_intake_keys, sealed_report
from punte.stack import Stack
from punte.synthetic import synthetic_cnp
from runtime.cloudevents import CloudEvent
from tests.e2e.conftest import sign_in

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 360, "height": 740, "deviceScaleFactor": 1, "mobile": True}
STEP_SECONDS = 15
MISSING = ("Debian's chromium and chromedriver are needed in /usr/bin (apt install chromium chromium-driver; "
           ".ci/run installs them in CI)")


def chromium_present() -> bool:
    return CHROMIUM.exists() and CHROMEDRIVER.exists()


# For the browser tests' modules (pytestmark): skipped before any fixture starts when
# Chromium is missing, unless CI is set; then the `browser` fixture fails instead.
needs_chromium = pytest.mark.skipif(not chromium_present() and not os.environ.get("CI"), reason=MISSING)


def start_chromium(profile: Path):
    """Headless Chromium on a phone's screen, with a fresh profile in `profile`."""
    if not chromium_present():
        pytest.fail(f"CI is set and the browser tests cannot run: {MISSING}", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # the system's: Selenium Manager never downloads one
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=360,740", "--lang=ro"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    # A desktop window cannot be narrower than ~500 px; the phone's viewport is emulated.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return driver


class WebPage:
    """A page as a person uses it: what they click and type, and what they read. The pages
    share a frame (runtime/web_static/page.html): the sign-in form, RO | EN, sign-out."""

    def __init__(self, driver, url: str) -> None:
        self.driver, self.url = driver, url

    def open_fresh(self) -> None:
        """The page as someone opens it for the first time: no token, no language chosen."""
        self.driver.get(self.url)
        self.driver.execute_script("sessionStorage.clear(); localStorage.clear();")
        self.driver.get(self.url)
        self.wait(lambda d: self.visible("#login-form"), what="the sign-in form")

    # -- reading (pages re-render whenever something arrives: read in one script call)
    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def _read(self, script: str, css: str, *args: Any) -> Any:
        return self.driver.execute_script(
            "var e = document.querySelector(arguments[0]); " + script, css, *args)

    def visible(self, css: str) -> bool:
        return bool(self._read("return !!e && e.getClientRects().length > 0;", css))

    def text(self, css: str) -> str:
        """What the element shows (its rendered text), as a person reads it."""
        shown = self._read("return e ? e.innerText : null;", css)
        assert shown is not None, f"nothing matches {css}"
        return shown.strip()

    def attribute(self, css: str, name: str) -> str | None:
        return self._read("return e ? e.getAttribute(arguments[1]) : null;", css, name)

    def wait(self, condition: Callable[[Any], Any], seconds: float = STEP_SECONDS, what: str = "") -> Any:
        try:
            return WebDriverWait(self.driver, seconds, poll_frequency=0.2,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            seen = self.driver.find_element(By.TAG_NAME, "body").text
            logs = [e["message"] for e in self.driver.get_log("browser")]
            raise AssertionError(f"not seen after {seconds}s: {what}\n--- the page shows:\n{seen}\n"
                                 f"--- the browser's console:\n{logs}") from None

    def wait_text(self, css: str, text: str, seconds: float = STEP_SECONDS) -> str:
        def shown(driver) -> str | bool:
            now = self._read("return e ? e.innerText : '';", css)
            return text in now and now
        return self.wait(shown, seconds, f"{text!r} in {css}")

    def fits_the_screen(self) -> bool:
        """Nothing to scroll sideways on the phone's 360 px."""
        width, client = self.driver.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        return width <= client == PHONE["width"]

    def console_errors(self, *expected: str) -> list[str]:
        """The browser console's errors since last read, but those naming an `expected` text."""
        return [e["message"] for e in self.driver.get_log("browser")
                if e["level"] == "SEVERE" and not any(x in e["message"] for x in expected)]

    # -- doing
    def submit_sign_in(self, username: str, password: str) -> None:
        """Types into the shared sign-in form and submits it."""
        for css, value in (("#username", username), ("#password", password)):
            field = self.find(css)
            field.clear()
            field.send_keys(value)
        self.find("#login-form button[type=submit]").click()

    def click(self, css: str) -> None:
        for attempt in range(3):
            try:
                element = self.find(css)
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
                element.click()
                return
            except StaleElementReferenceException:
                if attempt == 2:
                    raise

    def screenshot(self, name: str, full_page: bool = False) -> Path:
        """docs/screenshots/<name>: the phone's screen, or the whole page at its width."""
        if full_page:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**PHONE, "height": height})
        self.driver.execute_script("window.scrollTo(0, 0)")
        try:
            assert self.driver.save_screenshot(str(SCREENSHOTS / name))
        finally:
            if full_page:
                self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        return SCREENSHOTS / name


# ---- the network, from a synchronous test ------------------------------------------------

def password(network: Stack, username: str) -> str:
    return json.loads(network.state.passwords_file.read_text())[username]


def token(network: Stack, username: str) -> str:
    # The conftest's sign-in, on a loop of its own: these tests are synchronous (Selenium).
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, sign_in(network, username)).result()


def send_report(network: Stack, reporter: str, categories: list[str], *, role: str, channel: str,
                danger: bool = False, household: dict[str, Any] | None = None) -> dict[str, Any]:
    """A signed report from the institution's system through intake's HTTP gateway, about a
    synthetic child of its own (a fresh CNP: a new case, never joined to an earlier one)."""
    rng = random.Random(uuid.uuid4().int)
    born = date(2012, 1, 1) + timedelta(days=rng.randrange(0, 3500))
    data: dict[str, Any] = {
        "reporter": {"institution": reporter, "role": role}, "channel": channel,
        "child": {"cnp": synthetic_cnp(rng, born), "uat_siruta": 21891, "county": "BC"},
        "risks": [{"category": c} for c in categories], "description": "Date sintetice.",
        "immediate_danger": danger,
    }
    if household:
        data["household"] = household
    # Sealed to intake's published keys, as the institution's system does (report v3).
    event_id = str(uuid.uuid4())
    sealed = sealed_report(data, event_id, fetch_intake_keys(network.url("intake")))
    event = network.state.institution_key(reporter).sign(
        CloudEvent.new(EventType.REPORT_SUBMITTED_V3.value, f"/institutions/{reporter}", sealed, id=event_id))
    headers = {"Authorization": f"Bearer {token(network, 'sys.' + reporter)}", "content-type": "application/json",
               **{k.replace("ce_", "ce-", 1): v.decode() for k, v in event.headers() if k.startswith("ce_")}}
    answer = httpx.post(f"{network.url('intake')}/v1/events", content=event.body(), headers=headers,
                        params={"wait": 30}, timeout=40)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    return answer.json()
