"""Loads the block library: the shipped blocks plus a user's folder (`DCB_BLOCKS_DIR`).

`load_library(user_dir)` returns a `BlockLibrary`: the `Catalogue` the rules check block
names and parameters against, and the `BlockRenderer` with every template compiled once.
A user's block with the id of a shipped one replaces it. Every problem in every file is
reported at once as `DocumentError` (`file:line: reason`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blocks.declarations import block_spec, library_files, parse_block_documents, user_files
from blocks.renderer import FALLBACK_BLOCK, BlockRenderer
from blocks.sandbox import MAX_STEPS, TIME_LIMIT
from blocks.templates import CompiledBlock, Sandboxes, compile_block
from connector.core.catalogue import Catalogue
from connector.core.documents import DocumentError, Problem


@dataclass(frozen=True, slots=True)
class BlockLibrary:
    """Every loaded block, as the rules see them and as the renderer renders them."""

    catalogue: Catalogue
    renderer: BlockRenderer


def load_library(
    user_dir: Path | None = None,
    *,
    clock: Callable[[], float] = time.thread_time,
    time_limit: float = TIME_LIMIT,
    max_steps: int = MAX_STEPS,
) -> BlockLibrary:
    """Load, check and compile the shipped blocks and `user_dir`'s; raises `DocumentError`.

    `clock`, `time_limit` and `max_steps` bound each render (see `blocks.sandbox`).
    """
    files = library_files() + (user_files(user_dir) if user_dir else [])
    return library_from_files(files, clock=clock, time_limit=time_limit, max_steps=max_steps)


def library_from_files(
    files: list[tuple[str, str]],
    *,
    clock: Callable[[], float] = time.thread_time,
    time_limit: float = TIME_LIMIT,
    max_steps: int = MAX_STEPS,
) -> BlockLibrary:
    """Like `load_library`, from (source name, text) pairs; raises `DocumentError`."""
    sandboxes = Sandboxes.create()
    compiled: dict[str, CompiledBlock] = {}
    problems: list[Problem] = []
    for source, document in parse_block_documents(files).values():
        try:
            spec = block_spec(source, document)
            compiled[spec.id] = compile_block(source, document, spec, sandboxes)
        except DocumentError as exc:
            problems.extend(exc.problems)
    if not problems and FALLBACK_BLOCK not in compiled:
        problems.append(Problem("blocks", 0, f"the fallback block {FALLBACK_BLOCK!r} is missing"))
    if problems:
        raise DocumentError(problems)
    catalogue = Catalogue({block_id: block.spec for block_id, block in compiled.items()})
    renderer = BlockRenderer(compiled, clock=clock, time_limit=time_limit, max_steps=max_steps)
    return BlockLibrary(catalogue=catalogue, renderer=renderer)
