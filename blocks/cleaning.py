"""What a rendered output may contain once it leaves the renderer.

Plain outputs (headline, body, CTA text, coupon, text) go into platform properties that a
marketer's template may print without escaping, so they carry no markup and no control or
bidirectional-override characters. URL outputs are http(s) or empty. All functions are
pure and never raise.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: Longest URL we push: browsers and ESPs cope with 2,048 everywhere.
MAX_URL = 2_048
ELLIPSIS = "…"

_INVISIBLE_ELEMENT = re.compile(r"<(script|style)\b.*?(</\1\s*>|$)", re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?(-->|$)", re.DOTALL)
_TAG = re.compile(r"</?[A-Za-z!/?][^<>]*>?")
# C0/C1 controls except tab and newline, zero-width and bidirectional formatting characters.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")
_URL_FORBIDDEN = re.compile(r"[\s\"'<>\\`{}|^\x00-\x1f\x7f]")


def strip_markup(text: str) -> str:
    """`text` without tags, comments, script/style content, stray angle brackets and
    control characters (tabs become spaces; newlines are kept)."""
    text = _INVISIBLE_ELEMENT.sub(" ", text)
    text = _COMMENT.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = text.replace("<", " ").replace(">", " ").replace("\t", " ")
    return _CONTROL.sub("", text)


def one_line(text: str) -> str:
    """Plain text on one line: markup stripped, whitespace runs collapsed."""
    return " ".join(strip_markup(text).split())


def paragraphs(text: str) -> str:
    """Plain text in paragraphs: a blank line in the template separates paragraphs (kept as
    one blank line), any other whitespace run, line breaks included, becomes one space."""
    blocks = re.split(r"\n[ \t]*\n", strip_markup(text).replace("\r", "\n"))
    kept = (" ".join(block.split()) for block in blocks)
    return "\n\n".join(block for block in kept if block)


def truncate(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else cut at a word boundary with an ellipsis."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[:limit]
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 2 // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:-—") + ELLIPSIS


def http_url(text: str) -> str:
    """`text` (trimmed) if it is an absolute http(s) URL with a host and nothing that could
    break out of an attribute, else ""."""
    candidate = text.strip()
    if not candidate or len(candidate) > MAX_URL or _URL_FORBIDDEN.search(candidate):
        return ""
    try:
        parts = urlsplit(candidate)
        host = parts.hostname
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not host:
        return ""
    return candidate
