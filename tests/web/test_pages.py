"""The web app's pages in a real browser, against the demo world `make run` seeds: the
teacher, the NAV veileder and the participant going through Broen the way they would, each
in a browser context of their own.

Every test shares one demo world (the package's `demo_web`), so none depends on what another
did: each makes its own threads (with a subject of its own) and its own consent requests, and
asserts on those. The one lasting change, a withdrawn consent, is Ola's: no other test needs
his; Kari's paper consents stay.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError

from tests.system.test_make_run import _clean_env
from tests.web.conftest import (
    DemoWeb,
    FocusStop,
    assert_accessible,
    assert_focus_visible,
    screenshot,
    tab_through,
)

OSLO = ZoneInfo("Europe/Oslo")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SESSION_COOKIE = "broen_session"
TONE = "Tone Lærer"
VERA = "Vera Veileder"
KARI = "Kari Nordmann"
OLA = "Ola Nordmann"
NAV_FOLLOWUP = "Oppfølging i NAV og hvem som er veilederen din"
NO_CONSENT = "mangler samtykke for formål oppfølging"
# What a page must never show: a stack trace, or the API's English problem details.
LEAKS = (
    "Traceback",
    "Exception",
    "Internal Server Error",
    "Unprocessable",
    "Not Found",
    "problem+json",
    "national_id_in_text",
    "refer to the participant",
    '"detail"',
)


# --- the demo world and its people --------------------------------------------------------------


def demo_people(demo_web: DemoWeb) -> dict[str, list[dict[str, Any]]]:
    people: dict[str, list[dict[str, Any]]] = json.loads(
        (demo_web.workdir / "var/demo/web-sign-in.json").read_text()
    )
    return people


def staff_member(demo_web: DemoWeb, name: str) -> dict[str, Any]:
    return next(s for s in demo_people(demo_web)["staff"] if s["name"] == name)


def national_id_of(demo_web: DemoWeb, name: str) -> str:
    found = next(p for p in demo_people(demo_web)["participants"] if p["name"] == name)
    return str(found["national_id"])


def unique(text: str) -> str:
    return f"{text} ({uuid.uuid4().hex[:8]})"


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[[str], Page]]:
    """Another person's browser: a fresh context like `page`'s, screenshotted at the end."""
    opened: list[tuple[str, Page]] = []

    def new(who: str) -> Page:
        context = browser.new_context(
            locale="nb-NO", timezone_id="Europe/Oslo", viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(10_000)
        other = context.new_page()
        opened.append((who, other))
        return other

    yield new
    for who, other in opened:
        with suppress(PlaywrightError):
            screenshot(other, f"end-{who}")
        other.context.close()


# --- what people do on the pages ------------------------------------------------------------------


def sign_in(page: Page, demo_web: DemoWeb, name: str, *, go: bool = True) -> None:
    """The demo sign-in: the radio with the person's name, then "Logg inn"."""
    if go:
        page.goto(f"{demo_web.web_url}/logg-inn")
    page.get_by_label(re.compile("^" + re.escape(name) + r"( –|$)")).check()
    page.get_by_role("button", name="Logg inn", exact=True).click()
    page.wait_for_url(lambda url: "/logg-inn" not in url)


def find_participant(page: Page, national_id: str) -> str:
    """ "Finn deltaker" by national id; the card's URL."""
    menu = page.get_by_role("navigation", name="Hovedmeny")
    menu.get_by_role("link", name="Finn deltaker").click()
    page.get_by_label("Fødselsnummer eller D-nummer").fill(national_id)
    page.get_by_role("button", name="Finn", exact=True).click()
    page.wait_for_url(re.compile(rf"/deltakere/{UUID}$"))
    return page.url


def message_form(page: Page) -> Locator:
    return page.locator("form[action$='/melding']")


def write_to_veileder(page: Page, subject: str, body: str) -> str:
    """On the card: a new message to the participant's NAV veileder; the thread's URL."""
    form = message_form(page)
    form.get_by_label("Emne", exact=True).fill(subject)
    form.get_by_label("Melding", exact=True).fill(body)
    form.get_by_role("button", name="Send melding til elevens NAV-veileder").click()
    page.wait_for_url(re.compile(rf"/samtaler/{UUID}\?sendt="))
    return page.url.split("?", 1)[0]


def new_thread(page: Page, demo_web: DemoWeb, subject: str, body: str) -> str:
    """Tone signs in, finds Kari and writes to her veileder; the thread's URL."""
    sign_in(page, demo_web, TONE)
    find_participant(page, national_id_of(demo_web, KARI))
    return write_to_veileder(page, subject, body)


def reply(page: Page, text: str) -> None:
    page.get_by_label("Din melding", exact=True).fill(text)
    page.get_by_role("button", name="Send svar", exact=True).click()
    page.wait_for_url(re.compile(r"\?sendt="))


def bodies(page: Page) -> list[str]:
    """The thread's messages as the page shows them, oldest first."""
    return [text.strip() for text in page.locator("ol.messages .body").all_inner_texts()]


def request_consent(page: Page, card_url: str, categories: list[str], justification: str) -> None:
    """On the card: "Be deltakeren om samtykke", exactly `categories`, a justification, send."""
    page.goto(card_url)
    page.get_by_role("link", name="Be deltakeren om samtykke").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Be .* om samtykke$"))
    boxes = page.get_by_role("group", name="Hvilke opplysninger ber du om å få?")
    for box in boxes.get_by_role("checkbox").all():
        box.set_checked(box.evaluate("(el) => el.labels[0].textContent.trim()") in categories)
    page.get_by_label(re.compile("^Hvorfor spør du")).fill(justification)
    screenshot(page, "consent-request-filled")
    page.get_by_role("button", name="Send forespørsel").click()
    page.wait_for_url(re.compile(r"\?samtykke=sendt$"))
    expect(page.get_by_role("status")).to_contain_text("Forespørselen om samtykke er sendt")


def given_consents(page: Page) -> Locator:
    return page.locator("section[aria-labelledby=samtykker] article.consent")


def active_nav_followup_consents(page: Page) -> Locator:
    """On "Mine samtykker": the active consents that let NAV tell the school who the
    veileder is."""
    return (
        given_consents(page)
        .filter(has=page.get_by_role("heading", name="NAV kan dele med skolen"))
        .filter(has=page.get_by_role("listitem").filter(has_text=NAV_FOLLOWUP))
        .filter(has=page.get_by_role("button", name="Trekk tilbake"))
    )


def accept_request(page: Page, justification: str) -> None:
    """On "Mine samtykker": the pending request with this justification, "Ja"."""
    pending = page.locator("section[aria-labelledby=foresporsler] article.consent").filter(
        has_text=justification
    )
    expect(pending).to_have_count(1)
    pending.get_by_role("button", name="Ja, jeg samtykker").click()
    page.wait_for_url(re.compile(r"/mine-samtykker\?gjort=godtatt$"))
    expect(page.get_by_role("status")).to_have_text("Du har godtatt forespørselen.")


def staff_token(demo_web: DemoWeb, name: str) -> str:
    """A token acting for the staff member, as `broen dev token --staff` mints it."""
    done = subprocess.run(
        [".venv/bin/broen", "dev", "token", "--staff", staff_member(demo_web, name)["id"]],
        cwd=demo_web.workdir,
        env=_clean_env(BROEN_ENV="dev", PYTHONPATH=str(demo_web.workdir)),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout.strip().splitlines()[-1]


def api_messages(demo_web: DemoWeb, token: str, thread_url: str) -> list[dict[str, Any]]:
    """The thread's messages from the gateway's API itself."""
    thread_id = thread_url.rsplit("/", 1)[-1]
    answer = httpx.get(
        f"{demo_web.gateway_url}/api/v1/threads/{thread_id}/messages",
        params={"limit": 200},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def assert_no_leaks(page: Page) -> None:
    content = page.content()
    leaked = [word for word in LEAKS if word in content]
    assert not leaked, f"{page.url} shows {leaked}"


# --- 1. the teacher writes, the veileder answers ---------------------------------------------


def test_a_teacher_writes_to_the_veileder_who_reads_and_answers(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    subject = unique("Mye fravær i norsk")
    question = "Kari har vært borte fra norsktimene flere uker nå. Kan vi ta en prat?"
    answer = unique("Takk, jeg ringer henne i morgen og kommer tilbake til deg")

    sign_in(page, demo_web, TONE)
    expect(page).to_have_url(f"{demo_web.web_url}/innboks")
    find_participant(page, national_id_of(demo_web, KARI))
    expect(page.get_by_role("heading", level=1)).to_have_text(KARI)
    screenshot(page, "tone-card")
    thread_url = write_to_veileder(page, subject, question)
    expect(page.get_by_role("status")).to_have_text("Meldingen er sendt.")
    mine = page.locator("li.message.mine").filter(has_text=question)
    expect(mine.locator(".meta")).to_contain_text("Ikke lest ennå")
    screenshot(page, "tone-sent")

    vera = open_page("vera")
    sign_in(vera, demo_web, VERA)
    expect(vera).to_have_url(f"{demo_web.web_url}/innboks")
    item = vera.locator("li.thread").filter(has=vera.get_by_role("link", name=subject, exact=True))
    expect(item).to_have_count(1)
    expect(item).to_have_class(re.compile(r"\bunread\b"))
    status = item.get_by_role("list", name="Status")
    expect(status).to_contain_text("1 ulest")
    expect(status).to_contain_text("Venter på svar fra deg")
    expect(item.locator(".meta")).to_contain_text("Demo videregående skole")
    screenshot(vera, "vera-inbox")

    item.get_by_role("link", name=subject, exact=True).click()
    vera.wait_for_url(thread_url)
    expect(vera.get_by_role("heading", level=1)).to_have_text(subject)
    assert bodies(vera) == [question]
    reply(vera, answer)
    assert bodies(vera) == [question, answer]
    screenshot(vera, "vera-answered")

    page.goto(thread_url)
    assert bodies(page) == [question, answer]
    expect(mine.locator(".meta")).to_have_text(re.compile(r"^Du · .* · Lest$"))
    theirs = page.locator("li.message:not(.mine)").filter(has_text=answer)
    expect(theirs.locator(".meta")).to_contain_text("NAV-veileder")
    screenshot(page, "tone-sees-answer")


# --- 2. the participant withdraws, the card says "Ikke delt" -------------------------------------


def test_a_withdrawn_consent_hides_the_veileder_from_the_teachers_card(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    sign_in(page, demo_web, TONE)
    card_url = find_participant(page, national_id_of(demo_web, OLA))
    ola = open_page("ola")
    sign_in(ola, demo_web, OLA)
    expect(ola).to_have_url(f"{demo_web.web_url}/mine-samtykker")
    if active_nav_followup_consents(ola).count() == 0:  # only if another test withdrew his
        justification = unique("Jeg vil vite hvem som er veilederen din i NAV")
        request_consent(page, card_url, [NAV_FOLLOWUP], justification)
        ola.reload()
        accept_request(ola, justification)

    page.goto(card_url)
    veileder_row = page.locator("ul.followers li").filter(has_text="NAV-veileder")
    expect(veileder_row).to_have_count(1)
    expect(veileder_row).not_to_contain_text("Ikke delt")
    screenshot(page, "card-before")

    screenshot(ola, "consents-before")
    withdrawn: list[str] = []
    while active_nav_followup_consents(ola).count():
        consent = active_nav_followup_consents(ola).first
        withdrawn.append(str(consent.get_attribute("aria-labelledby")).removeprefix("c-"))
        consent.get_by_role("button", name="Trekk tilbake").click()  # one click, no "are you sure"
        ola.wait_for_url(re.compile(r"/mine-samtykker\?gjort=trukket$"))
        expect(ola.get_by_role("status")).to_have_text(
            "Samtykket er trukket tilbake. Ingen får opplysningene på grunnlag av det lenger."
        )
    assert withdrawn
    article = ola.locator(f"article[aria-labelledby='c-{withdrawn[0]}']")
    expect(article.locator(".status")).to_have_text(re.compile(r"^Trukket tilbake – trukket "))
    expect(article.get_by_role("button", name="Trekk tilbake")).to_have_count(0)
    screenshot(ola, "consent-withdrawn")

    with ola.expect_download() as download_info:
        article.get_by_role("link", name="Last ned kvittering").click()
    download = download_info.value
    assert download.suggested_filename == f"samtykke-{withdrawn[0]}.json"
    receipt = json.loads(Path(download.path()).read_text())
    assert isinstance(receipt, dict) and "receipt" in receipt
    assert receipt["consent_id"] == withdrawn[0]
    assert receipt["receipt"].count(".") == 2  # a compact JWS

    page.reload()
    expect(veileder_row).to_have_text(f"NAV-veileder: Ikke delt – {NO_CONSENT}")
    screenshot(page, "card-after")


# --- 3. the access log ------------------------------------------------------------------------


def test_the_participants_access_log_lists_the_teachers_read(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    since = datetime.now(OSLO).replace(tzinfo=None, second=0, microsecond=0)
    sign_in(page, demo_web, TONE)
    find_participant(page, national_id_of(demo_web, KARI))
    expect(page.get_by_role("heading", level=1)).to_have_text(KARI)

    kari = open_page("kari")
    sign_in(kari, demo_web, KARI)
    kari.get_by_role("link", name="Hvem har sett opplysningene mine").click()
    expect(kari.get_by_role("heading", level=1)).to_have_text("Hvem har sett opplysningene mine")
    table = kari.get_by_role("table", name="Innsyn i hvem som har lest opplysninger om deg")
    rows: list[list[str]] = table.locator("tbody tr").evaluate_all(
        "(rows) => rows.map((row) => Array.from(row.cells, (cell) => cell.innerText.trim()))"
    )
    screenshot(kari, "access-log")

    def after_since(when: str) -> bool:
        return datetime.strptime(when, "%d.%m.%Y kl. %H:%M") >= since

    tones_reads = [
        row
        for row in rows
        if row[1].startswith("Demo videregående skole (Kontaktlærer")
        and after_since(row[0])
        and row[2] == "oppfølging"
    ]
    assert tones_reads, f"no read by the school since {since}:\n{rows[:10]}"
    assert any("Navn" in row[3].split(", ") for row in tones_reads), tones_reads
    assert all("En ansatt" in row[1] for row in tones_reads), tones_reads


# --- 4. a consent request, there and back -----------------------------------------------------


def test_a_consent_request_is_answered_by_the_participant(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    categories = [NAV_FOLLOWUP, "Fravær", "Fremgang i opplæringen"]
    justification = unique(
        "Vi vil gjerne se fraværet og fremgangen din sammen med NAV, så vi kan hjelpe deg"
    )

    def given_with_these_categories(on: Page) -> Locator:
        matching = given_consents(on).filter(
            has=on.get_by_role("heading", name="NAV kan dele med skolen")
        )
        for category in categories:
            matching = matching.filter(has=on.get_by_role("listitem").filter(has_text=category))
        return matching.filter(has=on.get_by_text("Gjelder", exact=False))

    kari = open_page("kari")
    sign_in(kari, demo_web, KARI)
    before = given_with_these_categories(kari).count()

    sign_in(page, demo_web, TONE)
    card_url = find_participant(page, national_id_of(demo_web, KARI))
    request_consent(page, card_url, categories, justification)
    screenshot(page, "request-sent")

    kari.reload()
    pending = kari.locator("section[aria-labelledby=foresporsler] article.consent").filter(
        has_text=justification
    )
    expect(pending).to_have_count(1)
    expect(pending.locator(".justification")).to_have_text(f"«{justification}»")
    expect(pending.get_by_role("heading")).to_have_text("NAV vil dele med skolen")
    expect(pending.get_by_role("listitem")).to_have_text(categories)
    screenshot(kari, "request-pending")

    accept_request(kari, justification)
    expect(pending).to_have_count(0)
    expect(given_with_these_categories(kari)).to_have_count(before + 1)
    screenshot(kari, "request-accepted")


# --- 5. accessibility and the keyboard ---------------------------------------------------------

# What Tab should reach, in document order: links, buttons and fields, one radio per group.
TABBABLE = """
() => {
  const groups = new Set();
  const found = [];
  const selector = 'a[href], button, input, select, textarea, [tabindex]';
  for (const el of document.querySelectorAll(selector)) {
    if (el.disabled || el.tabIndex < 0 || el.type === 'hidden' || !el.getClientRects().length) {
      continue;
    }
    if (el.type === 'radio') {
      if (groups.has(el.name)) continue;
      groups.add(el.name);
    }
    found.push([el.tagName.toLowerCase(), el.getAttribute('href'), el.getAttribute('name')]);
  }
  return found;
}
"""
FOCUSED = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const text = (node) => (node.innerText || node.textContent || '').replace(/\\s+/g, ' ').trim();
  const labels = Array.from(el.labels || []).map(text).join(' ');
  return {tag: el.tagName.toLowerCase(), name: el.getAttribute('name'), id: el.id,
          href: el.getAttribute('href'), label: labels || text(el)};
}
"""
FOCUS_TOP = """
() => {
  const start = document.createElement('span');
  start.tabIndex = -1;
  document.body.prepend(start);
  start.focus();
  start.addEventListener('blur', () => start.remove(), {once: true});
}
"""


def assert_keyboard_reaches_everything(page: Page, name: str) -> list[FocusStop]:
    """axe finds nothing; Tab starts at the skip link and reaches every link, button and field,
    each with a visible focus; and the skip link takes focus to the main content."""
    assert_accessible(page)
    stops = tab_through(page, max_steps=400)
    assert stops, f"Tab reaches nothing on {page.url}"
    assert (stops[0].tag, stops[0].label, stops[0].href) == ("a", "Gå til hovedinnhold", "#innhold")
    expected = [tuple(found) for found in page.evaluate(TABBABLE)]
    assert [(s.tag, s.href, s.name) for s in stops] == expected, page.url
    hidden = [stop for stop in stops if not stop.focus_visible]
    assert not hidden, f"no visible focus on {page.url}: {hidden}"
    # Focus visible at several stops, as a person tabbing along sees it.
    checks = {1, 2, (len(stops) + 1) // 2, len(stops)}
    page.evaluate(FOCUS_TOP)
    for step in range(1, len(stops) + 1):
        page.keyboard.press("Tab")
        if step in checks:
            assert_focus_visible(page)
            if step == 1:
                screenshot(page, f"{name}-skip-link")
    # The skip link works.
    page.evaluate(FOCUS_TOP)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("main#innhold")).to_be_focused()
    screenshot(page, name)
    return stops


def test_every_page_is_accessible_and_reachable_by_keyboard(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    web = demo_web.web_url
    page.goto(f"{web}/logg-inn")
    assert_keyboard_reaches_everything(page, "sign-in")
    page.get_by_role("button", name="Logg inn", exact=True).click()  # nobody chosen
    expect(page.get_by_role("alert")).to_have_text("Velg hvem du vil logge inn som.")
    assert_keyboard_reaches_everything(page, "sign-in-error")

    sign_in(page, demo_web, TONE, go=False)
    expect(page).to_have_url(f"{web}/innboks")
    assert_keyboard_reaches_everything(page, "inbox")

    page.goto(f"{web}/deltakere/finn")
    assert_keyboard_reaches_everything(page, "find")
    page.get_by_label("Fødselsnummer eller D-nummer").fill("01010100000")
    page.get_by_role("button", name="Finn", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("Fant ingen deltaker")
    expect(page.get_by_label("Fødselsnummer eller D-nummer")).to_have_attribute(
        "aria-invalid", "true"
    )
    assert_keyboard_reaches_everything(page, "find-error")

    card_url = find_participant(page, national_id_of(demo_web, KARI))
    assert_keyboard_reaches_everything(page, "card")
    form = message_form(page)
    form.get_by_label("Emne", exact=True).fill(unique("Et fødselsnummer"))
    form.get_by_label("Melding", exact=True).fill(f"Gjelder {national_id_of(demo_web, KARI)}")
    form.get_by_role("button", name=re.compile("^Send melding")).click()
    expect(page.locator("#body-feil")).to_contain_text("Teksten inneholder et fødselsnummer")
    assert_keyboard_reaches_everything(page, "card-message-error")

    page.goto(card_url)
    page.get_by_role("link", name="Be deltakeren om samtykke").click()
    assert_keyboard_reaches_everything(page, "consent-request")
    for box in page.get_by_role("checkbox").all():
        box.uncheck()
    page.get_by_label(re.compile("^Hvorfor spør du")).fill("Fordi.")
    page.get_by_role("button", name="Send forespørsel").click()
    expect(page.get_by_role("alert")).to_have_text(
        "Velg minst én opplysning og skriv hvorfor du spør."
    )
    assert_keyboard_reaches_everything(page, "consent-request-error")

    page.goto(card_url)
    write_to_veileder(page, unique("Tilgjengelighet"), "En melding for å se på samtalen.")
    assert_keyboard_reaches_everything(page, "thread")

    missing = page.goto(f"{web}/samtaler/{uuid.uuid4()}")
    assert missing is not None and missing.status == 404
    assert_keyboard_reaches_everything(page, "error-page")

    kari = open_page("kari")
    sign_in(kari, demo_web, KARI)
    expect(kari).to_have_url(f"{web}/mine-samtykker")
    assert_keyboard_reaches_everything(kari, "my-consents")
    kari.goto(f"{web}/innsyn")
    assert_keyboard_reaches_everything(kari, "access-log")


def test_a_teacher_signs_in_and_replies_with_the_keyboard_only(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    subject = unique("Tastatur")
    thread_url = new_thread(open_page("setup"), demo_web, subject, "Første melding.")
    text = unique("Svar skrevet bare med tastaturet")

    def tab_to(matches: Callable[[dict[str, Any]], bool], what: str, limit: int = 300) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED)
            if focused is not None and matches(focused):
                assert_focus_visible(page)
                return
        raise AssertionError(f"Tab never reached {what} on {page.url}")

    page.goto(f"{demo_web.web_url}/logg-inn")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED)["label"] == "Gå til hovedinnhold"
    tab_to(lambda f: f["tag"] == "input" and f["name"] == "who", "the people to sign in as")
    for _ in range(20):  # arrows move within the radio group
        if page.evaluate(FOCUSED)["label"].startswith(TONE):
            break
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    expect(page.get_by_label(re.compile(f"^{TONE} –"))).to_be_checked()
    screenshot(page, "tone-chosen")
    tab_to(lambda f: f["tag"] == "button" and f["label"] == "Logg inn", "Logg inn")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{demo_web.web_url}/innboks")

    tab_to(lambda f: f["tag"] == "a" and f["label"] == subject, "the thread in the inbox")
    page.keyboard.press("Enter")
    page.wait_for_url(thread_url)
    tab_to(lambda f: f["tag"] == "textarea" and f["name"] == "body", "Din melding")
    page.keyboard.type(text)
    screenshot(page, "reply-typed")
    tab_to(lambda f: f["tag"] == "button" and f["label"] == "Send svar", "Send svar")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"\?sendt="))

    expect(page.get_by_role("status")).to_have_text("Meldingen er sendt.")
    assert bodies(page) == ["Første melding.", text]


# --- 6. bad input -------------------------------------------------------------------------------


def test_a_national_id_in_a_message_is_refused_in_norwegian_and_the_form_is_kept(
    demo_web: DemoWeb, page: Page
) -> None:
    national_id = national_id_of(demo_web, KARI)
    subject = unique("Om eleven")
    body = f"Gjelder eleven med fødselsnummer {national_id}, se fraværet hennes."
    sign_in(page, demo_web, TONE)
    find_participant(page, national_id)
    form = message_form(page)
    form.get_by_label("Emne", exact=True).fill(subject)
    form.get_by_label("Melding", exact=True).fill(body)
    with page.expect_response(lambda r: r.url.endswith("/melding")) as sent:
        form.get_by_role("button", name="Send melding til elevens NAV-veileder").click()
    assert sent.value.status == 422

    expect(page.get_by_role("alert")).to_have_text("Noe i skjemaet er ikke riktig fylt ut.")
    expect(page.locator("#body-feil")).to_have_text(
        "Teksten inneholder et fødselsnummer eller D-nummer. Ta det bort: samtalen viser "
        "allerede hvilken deltaker det gjelder."
    )
    expect(form.get_by_label("Melding", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(form.get_by_label("Melding", exact=True)).to_have_attribute(
        "aria-describedby", "body-feil"
    )
    expect(form.get_by_label("Emne", exact=True)).to_have_value(subject)
    expect(form.get_by_label("Melding", exact=True)).to_have_value(body)
    assert_no_leaks(page)
    assert_accessible(page)
    screenshot(page, "refused")

    page.goto(f"{demo_web.web_url}/innboks")
    expect(page.get_by_role("link", name=subject)).to_have_count(0)


def test_an_ended_session_keeps_the_reply_through_signing_in_again(
    demo_web: DemoWeb, page: Page
) -> None:
    thread_url = new_thread(page, demo_web, unique("Økt"), "Første melding.")
    draft = unique("Et langt svar som ikke må gå tapt")
    page.goto(thread_url)
    page.get_by_label("Din melding", exact=True).fill(draft)
    screenshot(page, "draft-typed")

    page.context.clear_cookies()  # the session ends while she writes
    page.get_by_role("button", name="Send svar", exact=True).click()
    page.wait_for_url(re.compile(r"/logg-inn\?"))
    expect(page.get_by_role("alert")).to_contain_text("Økten din er utløpt")
    assert_no_leaks(page)
    screenshot(page, "expired")

    sign_in(page, demo_web, TONE, go=False)
    expect(page).to_have_url(thread_url)
    expect(page.get_by_label("Din melding", exact=True)).to_have_value(draft)  # from broen.js
    screenshot(page, "draft-restored")
    page.get_by_role("button", name="Send svar", exact=True).click()
    page.wait_for_url(re.compile(r"\?sendt="))
    assert bodies(page) == ["Første melding.", draft]
    page.goto(thread_url)  # the draft is gone once sent
    expect(page.get_by_label("Din melding", exact=True)).to_have_value("")


def test_an_ended_session_keeps_a_reply_written_right_after_sending_a_message(
    demo_web: DemoWeb, page: Page
) -> None:
    new_thread(page, demo_web, unique("Økt etter sending"), "Første melding.")
    assert "?sendt=" in page.url  # where a new thread takes her: she writes on from here
    draft = unique("Et tillegg som ikke må gå tapt")
    page.get_by_label("Din melding", exact=True).fill(draft)
    page.context.clear_cookies()
    page.get_by_role("button", name="Send svar", exact=True).click()
    page.wait_for_url(re.compile(r"/logg-inn\?"))
    sign_in(page, demo_web, TONE, go=False)
    expect(page.get_by_label("Din melding", exact=True)).to_have_value(draft, timeout=2_000)


def test_a_double_submit_and_a_resent_form_send_one_message(demo_web: DemoWeb, page: Page) -> None:
    thread_url = new_thread(page, demo_web, unique("Dobbeltklikk"), "Første melding.")
    page.goto(thread_url)
    text = unique("Sendt med dobbeltklikk")
    form = page.locator("form[action$='/svar']")
    form.get_by_label("Din melding", exact=True).fill(text)
    fields = {
        name: form.locator(f"input[name={name}]").input_value()
        for name in ("csrf_token", "form_key")
    }
    action = f"{demo_web.web_url}{form.get_attribute('action')}"

    form.get_by_role("button", name="Send svar", exact=True).dblclick()
    page.wait_for_url(re.compile(r"\?sendt="))
    # The same form again, from the page (the browser's own cookies and Sec-Fetch-Site) ...
    resent = page.evaluate(
        """async ([action, fields]) => {
             const body = new URLSearchParams(fields);
             const answer = await fetch(action, {method: 'POST', body});
             return {status: answer.status, url: answer.url};
           }""",
        [action, {**fields, "body": text}],
    )
    assert resent["status"] == 200 and "sendt=" in resent["url"], resent
    # ... and through the request API with the session cookie.
    again = page.request.post(action, form={**fields, "body": text}, max_redirects=0)
    assert again.status == 303 and "sendt=" in again.headers["location"]

    page.goto(thread_url)
    assert bodies(page).count(text) == 1, bodies(page)
    screenshot(page, "one-message")
    from_api = api_messages(demo_web, staff_token(demo_web, TONE), thread_url)
    assert [m["body"] for m in from_api].count(text) == 1, from_api


def test_a_form_without_the_csrf_token_or_from_another_site_is_refused(
    demo_web: DemoWeb, page: Page
) -> None:
    thread_url = new_thread(page, demo_web, unique("CSRF"), "Første melding.")
    page.goto(thread_url)
    form = page.locator("form[action$='/svar']")
    csrf = form.locator("input[name=csrf_token]").input_value()
    action = f"{demo_web.web_url}{form.get_attribute('action')}"
    refused = {
        "no token": {"form": {}, "headers": {}},
        "wrong token": {"form": {"csrf_token": "x" * 43}, "headers": {}},
        "cross-site": {"form": {"csrf_token": csrf}, "headers": {"Sec-Fetch-Site": "cross-site"}},
        "same-site": {"form": {"csrf_token": csrf}, "headers": {"Sec-Fetch-Site": "same-site"}},
    }
    texts = {}
    for case, sent in refused.items():
        texts[case] = unique(f"Skal ikke sendes ({case})")
        answer = page.request.post(
            action,
            form={**sent["form"], "form_key": str(uuid.uuid4()), "body": texts[case]},
            headers=sent["headers"],
            max_redirects=0,
        )
        if answer.status == 303:
            assert answer.headers["location"].startswith("/logg-inn"), (case, answer.headers)
        else:
            assert answer.status == 403, (case, answer.status)
            assert "Skjemaet var utløpt" in answer.text(), case
            assert not any(word in answer.text() for word in LEAKS), case

    # A page on another site that posts the form (with a leaked token, even): the Lax cookie
    # stays home, and so does the message.
    evil = page.context.new_page()
    texts["other site"] = unique("Skal ikke sendes (annet nettsted)")
    evil.route(
        "http://angriper.example/",
        lambda route: route.fulfill(
            content_type="text/html",
            body=f"""<!doctype html><html lang="en"><title>Win</title>
            <form method="post" action="{action}">
              <input type="hidden" name="csrf_token" value="{csrf}">
              <input type="hidden" name="form_key" value="{uuid.uuid4()}">
              <input type="hidden" name="body" value="{texts["other site"]}">
              <button type="submit">Win a prize</button>
            </form></html>""",
        ),
    )
    evil.goto("http://angriper.example/")
    with evil.expect_navigation():
        evil.get_by_role("button", name="Win a prize").click()
    assert evil.url.startswith(f"{demo_web.web_url}/logg-inn") or "Skjemaet var utløpt" in (
        evil.content()
    ), evil.url
    screenshot(evil, "cross-site-post")
    evil.close()

    control = unique("Sendt med riktig token")  # the same request, with the token, goes
    sent_ok = page.request.post(
        action,
        form={"csrf_token": csrf, "form_key": str(uuid.uuid4()), "body": control},
        max_redirects=0,
    )
    assert sent_ok.status == 303, sent_ok.status
    page.goto(thread_url)
    shown = bodies(page)
    assert shown == ["Første melding.", control], shown
    screenshot(page, "nothing-sent")


def test_an_unknown_thread_is_a_readable_norwegian_404(demo_web: DemoWeb, page: Page) -> None:
    sign_in(page, demo_web, TONE)
    for path, message in (
        (f"/samtaler/{uuid.uuid4()}", "Fant ikke det du ba om."),
        ("/samtaler/ikke-en-samtale", "Fant ikke siden."),
    ):
        answer = page.goto(f"{demo_web.web_url}{path}")
        assert answer is not None and answer.status == 404, path
        expect(page.get_by_role("heading", level=1)).to_have_text("Noe gikk galt")
        expect(page.get_by_role("alert")).to_contain_text(message)
        assert_no_leaks(page)
        screenshot(page, "not-found")


# --- 7. headers, cookies and URLs ---------------------------------------------------------------


def _cookie_payload(value: str) -> str:
    """What Starlette's signed session cookie holds: base64 JSON, then the signature."""
    data = value.split(".", 1)[0]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode(errors="replace")


def test_security_headers_the_session_cookie_and_no_national_id_in_any_url(
    demo_web: DemoWeb, page: Page, open_page: Callable[[str], Page]
) -> None:
    national_id = national_id_of(demo_web, KARI)
    urls: list[str] = []
    documents: list[tuple[str, dict[str, str]]] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on(
        "response",
        lambda response: (
            documents.append((response.url, response.headers))
            if response.request.resource_type == "document"
            else None
        ),
    )

    sign_in(page, demo_web, TONE)
    card_url = find_participant(page, national_id)
    expect(page.get_by_role("heading", level=1)).to_have_text(KARI)
    screenshot(page, "card")

    assert documents
    for url, headers in documents:
        csp = headers.get("content-security-policy", "")
        assert "script-src 'self'" in csp and "default-src 'self'" in csp, (url, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (url, csp)
        assert "frame-ancestors 'none'" in csp, (url, csp)
        assert headers.get("x-content-type-options") == "nosniff", url
    cookies = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert len(cookies) == 1, page.context.cookies()
    assert cookies[0]["httpOnly"] is True
    assert cookies[0]["sameSite"] == "Lax"
    assert national_id not in _cookie_payload(cookies[0]["value"])

    assert card_url in urls
    assert not [url for url in urls if national_id in url], urls
    assert national_id not in page.content()

    kari = open_page("kari")  # her cookie holds her token, sealed, and not her national id
    sign_in(kari, demo_web, KARI)
    [citizen] = [c for c in kari.context.cookies() if c["name"] == SESSION_COOKIE]
    assert citizen["httpOnly"] is True and citizen["sameSite"] == "Lax"
    assert national_id not in _cookie_payload(citizen["value"])
