"""Strip secrets and personal data from text that leaves the adapters (reasons, logs).

Platform error messages may quote the email we sent or echo a credential; `scrub()`
replaces email addresses and credential-looking tokens and caps the length.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_CREDENTIAL = re.compile(
    r"(?i)(bearer|klaviyo-api-key|api[_-]?key|token|hapikey)([\s:=\"']+)[\w.\-~+/=]{6,}"
)
_KEYS = re.compile(r"\b(?:pk|sk|pat)[-_][\w-]{6,}")


def scrub(text: str, limit: int = 300) -> str:
    """`text` without emails or credentials, at most `limit` characters."""
    clean = _EMAIL.sub("<email>", text)
    clean = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}<secret>", clean)
    clean = _KEYS.sub("<secret>", clean)
    clean = " ".join(clean.split())
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."
