"""The browser tests' own tools, on pages of their own: no Broen process is started."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.web.conftest import (
    FocusStop,
    assert_accessible,
    assert_focus_visible,
    axe_violations,
    screenshot,
    tab_through,
)

FORM = """<!doctype html>
<html lang="nb">
<head><meta charset="utf-8"><title>Søk etter deltaker</title>{style}</head>
<body>
  <main>
    <h1>Søk etter deltaker</h1>
    <form>
      <label for="navn">Navn</label>
      <input id="navn" name="navn" type="text">
      {extra}
      <button type="submit">Søk</button>
    </form>
  </main>
</body>
</html>"""


def test_a_labelled_form_passes_axe_and_tab_reaches_its_fields_in_order(page: Page) -> None:
    page.set_content(FORM.format(style="", extra=""))

    assert_accessible(page)
    stops = tab_through(page)
    screenshot(page, "after-tab-walk")

    assert stops == [
        FocusStop("input", "Navn", None, "navn", True),
        FocusStop("button", "Søk", None, None, True),
    ]
    page.keyboard.press("Tab")  # focus left the page after the button; Tab brings it back
    expect(page.get_by_label("Navn")).to_be_focused()
    assert_focus_visible(page)


def test_an_unlabelled_field_is_a_violation_axe_reports(page: Page) -> None:
    page.set_content(FORM.format(style="", extra='<input name="uten-etikett" type="text">'))

    violations = axe_violations(page)

    assert [v["id"] for v in violations] == ["label"]
    assert violations[0]["nodes"][0]["target"] == ['input[name="uten-etikett"]']
    with pytest.raises(AssertionError, match=r"- label \[critical\] .*uten-etikett"):
        assert_accessible(page)


def test_a_focus_indicator_removed_by_css_is_caught(page: Page) -> None:
    page.set_content(FORM.format(style="<style>:focus { outline: none }</style>", extra=""))

    stops = tab_through(page)
    page.keyboard.press("Tab")

    assert [stop.focus_visible for stop in stops] == [False, False]
    with pytest.raises(AssertionError, match="no focus indicator"):
        assert_focus_visible(page)


def test_a_page_with_nothing_to_tab_to_has_no_stops(page: Page) -> None:
    page.set_content('<html lang="nb"><title>Tom</title><body><p>Ingenting her</p></body></html>')

    assert tab_through(page) == []
