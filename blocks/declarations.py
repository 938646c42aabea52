"""Reads block files (`blocks/library/*.yaml`, and a user's `DCB_BLOCKS_DIR`) into specs.

A block file declares the block's id and its typed parameters with defaults::

    id: personalized_offer
    description: A discount on the shopper's cart.
    params:
      discount_percent: {type: integer, default: 20, description: Percent off the cart.}

A user's block with the id of a shipped one replaces it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from connector.core.catalogue import PARAM_TYPES, BlockSpec, Catalogue, CatalogueError, ParamSpec
from connector.core.documents import DocumentError, Problem, line_of, parse_document, plain
from connector.core.rules import compile_condition

BLOCK_KEYS = {"id", "description", "params", "outputs", "text_limit", "valid_while"}
PARAM_KEYS = {"type", "default", "description"}


def library_files() -> list[tuple[str, str]]:
    """(source name, text) for every shipped block file, in name order."""
    folder = resources.files("blocks") / "library"
    return [
        (f"blocks/library/{entry.name}", entry.read_text(encoding="utf-8"))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith((".yaml", ".yml"))
    ]


def user_files(folder: Path) -> list[tuple[str, str]]:
    """(path, text) for every block file in a user's folder; raises `DocumentError` if the
    folder does not exist."""
    if not folder.is_dir():
        raise DocumentError([Problem(str(folder), 0, "blocks folder does not exist")])
    return [
        (str(path), path.read_text(encoding="utf-8"))
        for path in sorted(folder.iterdir())
        if path.suffix in {".yaml", ".yml"}
    ]


def parse_block_documents(files: list[tuple[str, str]]) -> dict[str, tuple[str, Any]]:
    """Parse block files into {id: (source, document)}; raises `DocumentError` listing
    every problem found in every file."""
    found: dict[str, tuple[str, Any]] = {}
    problems: list[Problem] = []
    for source, text in files:
        try:
            document = parse_document(text, source)
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        block_id = document.get("id") if isinstance(document, Mapping) else None
        if not isinstance(block_id, str) or not block_id.isidentifier():
            problems.append(Problem(source, 1, "a block file needs an `id` (a name like my_offer)"))
            continue
        found[block_id] = (source, document)
    if problems:
        raise DocumentError(problems)
    return found


def block_spec(source: str, document: Any) -> BlockSpec:
    """The rules' view of one parsed block file; raises `DocumentError` on bad declarations."""
    problems: list[Problem] = []
    for key in document:
        if key not in BLOCK_KEYS:
            problems.append(Problem(source, line_of(document, [key]), f"unknown key {key!r}"))
    raw_params = document.get("params") or {}
    params: dict[str, ParamSpec] = {}
    if not isinstance(raw_params, Mapping):
        problems.append(Problem(source, line_of(document, ["params"]), "params must be a mapping"))
        raw_params = {}
    for name, raw in raw_params.items():
        where = ["params", name]
        if not isinstance(raw, Mapping) or raw.get("type") not in PARAM_TYPES:
            types = ", ".join(PARAM_TYPES)
            problems.append(
                Problem(source, line_of(document, where), f"param {name!r} needs a type ({types})")
            )
            continue
        extra = set(raw) - PARAM_KEYS
        if extra:
            problems.append(
                Problem(source, line_of(document, where), f"param {name!r}: unknown key {extra}")
            )
        spec = ParamSpec(
            name=str(name),
            type=str(raw["type"]),
            default=plain(raw.get("default")),
            description=str(raw.get("description") or ""),
        )
        if spec.default is not None:
            try:
                spec.check(spec.default)
            except CatalogueError as exc:
                problems.append(Problem(source, line_of(document, [*where, "default"]), str(exc)))
        params[spec.name] = spec
    valid_while = None
    if document.get("valid_while") is not None:
        try:
            valid_while = compile_condition(document, ["valid_while"], source)
        except DocumentError as exc:
            problems.extend(exc.problems)
    if problems:
        raise DocumentError(problems)
    return BlockSpec(
        id=str(document["id"]),
        params=params,
        description=str(document.get("description") or ""),
        valid_while=valid_while,
    )


def load_catalogue(user_dir: Path | None = None) -> Catalogue:
    """The shipped blocks plus a user's folder; raises `DocumentError` with every problem."""
    files = library_files() + (user_files(user_dir) if user_dir else [])
    documents = parse_block_documents(files)
    specs: dict[str, BlockSpec] = {}
    problems: list[Problem] = []
    for source, document in documents.values():
        try:
            spec = block_spec(source, document)
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        specs[spec.id] = spec
    if problems:
        raise DocumentError(problems)
    return Catalogue(specs)
