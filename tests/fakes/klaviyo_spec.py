"""Request-body validation against Klaviyo's OpenAPI slices (tests/fixtures/klaviyo-openapi)."""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

SPECS = Path(__file__).resolve().parent.parent / "fixtures" / "klaviyo-openapi"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` as JSON Schema: the type also admits null."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _nullable(value) for key, value in node.items()}
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    return out


@lru_cache(maxsize=4)
def _components(slice_name: str) -> dict[str, Any]:
    spec = json.loads((SPECS / f"{slice_name}.json").read_text(encoding="utf-8"))
    components: dict[str, Any] = _nullable(spec["components"])
    return components


@cache
def validator(schema_name: str, slice_name: str = "profiles") -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": _components(slice_name)}
    return Draft202012Validator(root)


def problems(schema_name: str, body: Any, slice_name: str = "profiles") -> list[str]:
    """Every way `body` breaks the named schema of the slice (`profiles`, `webhooks`), as
    'pointer: message' lines."""
    errors = sorted(validator(schema_name, slice_name).iter_errors(body),
                    key=lambda e: list(e.path))
    return ["/" + "/".join(str(p) for p in e.path) + ": " + e.message for e in errors]
