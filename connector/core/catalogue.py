"""What the rules know about blocks: each block's id and its typed parameters.

The block library (`blocks/`) reads its declarations into these types; the rule loader
checks a rule's `block` and `params` against them, so a rule set never names a block or a
parameter that does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the rules package imports this module: no import cycle at run time
    from connector.core.rules.model import Condition

#: Parameter types a block may declare, and the Python types a value may have.
PARAM_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "url": (str,),
}


class CatalogueError(ValueError):
    """A parameter value does not fit its declaration."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One declared parameter: its type, its default and what it is for."""

    name: str
    type: str
    default: Any = None
    description: str = ""

    def check(self, value: Any) -> Any:
        """Return `value` if it fits this parameter's type; raise `CatalogueError` if not.

        None fits a parameter whose default is None (an optional one).
        """
        if value is None and self.default is None:
            return None
        allowed = PARAM_TYPES[self.type]
        if isinstance(value, bool) and bool not in allowed:
            raise CatalogueError(f"parameter {self.name!r} expects {self.type}, got {value!r}")
        if not isinstance(value, allowed):
            raise CatalogueError(f"parameter {self.name!r} expects {self.type}, got {value!r}")
        if self.type == "url" and not str(value).startswith(("http://", "https://")):
            raise CatalogueError(f"parameter {self.name!r} expects an http(s) URL, got {value!r}")
        return value


@dataclass(frozen=True, slots=True)
class BlockSpec:
    """A block as the rules see it: its id and parameters."""

    id: str
    params: Mapping[str, ParamSpec] = field(default_factory=dict)
    description: str = ""
    #: While this holds (a rule condition over `event.*`, `profile.*`, `now.*`) the block's
    #: content is true; None: always.
    valid_while: Condition | None = None

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with `given`; raises `CatalogueError` for an unknown or bad one."""
        resolved = {name: spec.default for name, spec in self.params.items()}
        for name, value in given.items():
            spec = self.params.get(name)
            if spec is None:
                declared = ", ".join(sorted(self.params)) or "none"
                raise CatalogueError(
                    f"block {self.id!r} has no parameter {name!r} (declared: {declared})"
                )
            resolved[name] = spec.check(value)
        return resolved


class Catalogue(Mapping[str, BlockSpec]):
    """The blocks a rule set may use, by id."""

    def __init__(self, blocks: Mapping[str, BlockSpec]) -> None:
        self._blocks = dict(blocks)

    def __getitem__(self, block_id: str) -> BlockSpec:
        return self._blocks[block_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._blocks)

    def __len__(self) -> int:
        return len(self._blocks)
