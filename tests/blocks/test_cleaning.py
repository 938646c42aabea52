"""The cleaning rules every output passes through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blocks.cleaning import http_url, one_line, paragraphs, strip_markup, truncate


def test_strip_markup_drops_tags_scripts_comments_and_controls() -> None:
    assert one_line("a <b>bold</b> <script>x()</script><!-- c --> move\u202e\x07") == "a bold move"
    assert one_line("5 < 6 and 7 > 2") == "5 6 and 7 2"


def test_paragraphs_keep_blank_lines_only() -> None:
    assert paragraphs("one\n  two\n\n\n three  ") == "one two\n\nthree"


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("twenty percent off your whole cart", 20, "twenty percent off…"),
        ("abcdefghij", 5, "abcd…"),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    assert truncate(text, limit) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (" https://shop.example/p?x=1 ", "https://shop.example/p?x=1"),
        ("HTTP://shop.example", "HTTP://shop.example"),
        ("javascript:alert(1)", ""),
        ("https://", ""),
        ("https://[::1", ""),
        ("https://x.example/<i>", ""),
        ("https://" + "a" * 3000 + ".example", ""),
    ],
)
def test_http_url(url: str, expected: str) -> None:
    assert http_url(url) == expected


@given(st.text())
def test_stripped_text_has_no_angle_brackets_or_controls(text: str) -> None:
    cleaned = strip_markup(text)
    assert "<" not in cleaned and ">" not in cleaned
    assert not any(ord(c) < 32 and c != "\n" for c in cleaned)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_truncate_never_exceeds_the_limit(text: str, limit: int) -> None:
    assert len(truncate(text, limit)) <= limit
