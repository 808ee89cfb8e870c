"""Where the sign-in sends a person back to: a page on this site, never elsewhere."""

from __future__ import annotations

import pytest

from web.pages import safe_next


@pytest.mark.parametrize(
    ("asked", "back"),
    [
        ("/samtaler/1", "/samtaler/1"),
        ("/samtaler/1?sendt=svar-1", "/samtaler/1"),  # a one-time notice is not kept
        ("https://broen.example/innboks", "/innboks"),  # a Referer: its path only
        ("//evil.example/x", "/x"),  # another host: only the path, here
        ("/\\evil.example", ""),
        ("https://evil.example", ""),
        ("javascript:alert(1)", ""),
        ("/logg-inn?neste=/innboks", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_only_a_path_on_this_site_is_a_place_to_return_to(asked: str | None, back: str) -> None:
    assert safe_next(asked) == back
