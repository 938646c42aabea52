"""The example event the issue and the README show (`examples/checkout.json`), for tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

_PATH = Path(__file__).resolve().parent.parent / "examples" / "checkout.json"


def checkout() -> dict[str, Any]:
    """A fresh copy of the example checkout event's JSON form."""
    return copy.deepcopy(json.loads(_PATH.read_text(encoding="utf-8")))
