"""Renders a decided block into its named outputs, failing safe.

`BlockRenderer.render(block_id, params, event, profile)` never raises: when the block
fails (unknown block, bad parameters, a template error, a sandbox refusal, a limit) it logs
the reason and renders the fallback block (`we_noticed`) with its defaults instead; when
that fails too, it returns `LAST_RESORT`, a built-in text. `render_block` is the strict
form that raises `RenderError`, the one error type of rendering.

Plain outputs are rendered first (no HTML escaping; markup and control characters are
stripped afterwards, long values cut to `OUTPUT_LIMITS`), then `html` (autoescaped) and
`text` (plain, cut to the block's `text_limit`), which may read the finished plain outputs
as `outputs.*`. `cta_url` and `image_url` are http(s) URLs or "".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Template

from blocks.cleaning import http_url, one_line, paragraphs, truncate
from blocks.sandbox import (
    MAX_STEPS,
    TIME_LIMIT,
    Budget,
    RenderError,
    bounded_range,
    budget_scope,
    render_clock,
    watch_collector,
)
from blocks.templates import COMPOSED_OUTPUTS, PLAIN_OUTPUTS, CompiledBlock
from blocks.views import DataView, event_view, view
from connector.core.catalogue import CatalogueError
from connector.core.events import Event
from connector.core.properties import CONTENT_OUTPUTS

__all__ = ["BlockRenderer", "RenderError", "RenderedBlock", "LAST_RESORT", "FALLBACK_BLOCK"]

log = logging.getLogger("dcb.blocks")

FALLBACK_BLOCK = "we_noticed"
#: Largest output any template may generate before it is stopped (an output bomb).
GENERATION_CAP = 65_536
#: Final length of each output: plain ones are cut to fit, a longer `html` is a failure
#: (cut HTML would be broken HTML). Platform limits are far above the total.
OUTPUT_LIMITS: dict[str, int] = {
    "headline": 200,
    "body": 1_000,
    "cta_text": 60,
    "cta_url": 2_048,
    "image_url": 2_048,
    "coupon": 64,
    "html": 32_768,
}
URL_OUTPUTS = frozenset({"cta_url", "image_url"})
MULTILINE_OUTPUTS = frozenset({"body", "text"})

#: What is shown when even the fallback block cannot be rendered.
LAST_RESORT: Mapping[str, str] = {
    "headline": "Picked for you",
    "body": "Take another look at what caught your eye.",
    "cta_text": "Explore More",
    "cta_url": "",
    "image_url": "",
    "coupon": "",
    "html": (
        '<div style="font-family:Arial,Helvetica,sans-serif;padding:16px;color:#222222;">'
        '<p style="margin:0;font-size:18px;font-weight:bold;">Picked for you</p>'
        '<p style="margin:8px 0 0;font-size:14px;">Take another look at what caught your eye.'
        "</p></div>"
    ),
    "text": "Picked for you: take another look at what caught your eye.",
}


@dataclass(frozen=True, slots=True)
class RenderedBlock:
    """Every output of one render (all of `CONTENT_OUTPUTS`, "" when a block has none).

    `block_id` is the block whose content this is: the requested one, or the fallback
    when `fell_back` (then `error` says why the requested one failed).
    """

    block_id: str
    outputs: Mapping[str, str]
    fell_back: bool = False
    error: str | None = None


class BlockRenderer:
    """Renders compiled blocks in the sandbox, each within a step and time budget."""

    def __init__(
        self,
        blocks: Mapping[str, CompiledBlock],
        *,
        fallback: str = FALLBACK_BLOCK,
        clock: Callable[[], float] = render_clock,
        time_limit: float = TIME_LIMIT,
        max_steps: int = MAX_STEPS,
    ) -> None:
        watch_collector()
        self._blocks = dict(blocks)
        self._fallback = fallback
        self._clock = clock
        self._time_limit = time_limit
        self._max_steps = max_steps

    @property
    def block_ids(self) -> list[str]:
        return sorted(self._blocks)

    def block(self, block_id: str) -> CompiledBlock:
        """The compiled block; raises `RenderError` if there is none by that id."""
        try:
            return self._blocks[block_id]
        except KeyError:
            raise RenderError(f"unknown block {block_id!r}") from None

    def render(
        self,
        block_id: str,
        params: Mapping[str, Any],
        event: Event | None,
        profile: Mapping[str, Any],
    ) -> RenderedBlock:
        """Render `block_id`, else the fallback block, else `LAST_RESORT`; never raises."""
        try:
            return self.render_block(block_id, params, event, profile)
        except RenderError as exc:
            reason = str(exc)
        log.warning("block %s failed, rendering %s instead: %s", block_id, self._fallback, reason)
        try:
            rendered = self.render_block(self._fallback, {}, event, profile)
        except RenderError as exc:
            log.error("fallback block %s failed too, using built-in text: %s", self._fallback, exc)
            reason = f"{reason}; fallback {self._fallback} failed: {exc}"
            return RenderedBlock(self._fallback, dict(LAST_RESORT), fell_back=True, error=reason)
        return RenderedBlock(rendered.block_id, rendered.outputs, fell_back=True, error=reason)

    def render_block(
        self,
        block_id: str,
        params: Mapping[str, Any],
        event: Event | None,
        profile: Mapping[str, Any],
    ) -> RenderedBlock:
        """Render `block_id` exactly; raises `RenderError` for any failure."""
        compiled = self.block(block_id)
        try:
            resolved = compiled.spec.resolve(params)
        except CatalogueError as exc:
            raise RenderError(str(exc)) from None
        variables = {
            "event": event_view(event),
            "profile": view(profile),
            "params": view(resolved),
            "range": bounded_range,
        }
        budget = Budget(self._clock, self._time_limit, self._max_steps)
        with budget_scope(budget):
            try:
                outputs = _render_outputs(compiled, variables)
            except RenderError:
                raise
            except Exception as exc:  # any template failure becomes the one error type
                raise RenderError(f"{type(exc).__name__}: {exc}") from None
        return RenderedBlock(block_id, outputs)


def _render_outputs(compiled: CompiledBlock, variables: dict[str, Any]) -> dict[str, str]:
    outputs = dict.fromkeys(CONTENT_OUTPUTS, "")
    for name in PLAIN_OUTPUTS:
        template = compiled.templates.get(name)
        if template is not None:
            outputs[name] = _finish(name, _generate(template, variables, name), compiled)
    variables = {**variables, "outputs": DataView(dict(outputs))}
    for name in COMPOSED_OUTPUTS:
        template = compiled.templates.get(name)
        if template is not None:
            outputs[name] = _finish(name, _generate(template, variables, name), compiled)
    return outputs


def _generate(template: Template, variables: dict[str, Any], name: str) -> str:
    """The template's output, stopped with `RenderError` once it passes `GENERATION_CAP`."""
    chunks: list[str] = []
    size = 0
    sandbox = template.environment
    # A context built directly on `variables` (which hold `range`): Template.generate would
    # copy the globals into every context, a third of the cost of a small template.
    context = sandbox.context_class(sandbox, variables, None, {}, None)
    for chunk in template.root_render_func(context):
        size += len(chunk)
        if size > GENERATION_CAP:
            raise RenderError(f"output {name!r} passed {GENERATION_CAP} characters")
        chunks.append(chunk)
    return "".join(chunks)


def _finish(name: str, raw: str, compiled: CompiledBlock) -> str:
    """The cleaned, length-limited value of one output."""
    if name in URL_OUTPUTS:
        return http_url(raw)
    if name == "html":
        html = raw.strip()
        if len(html) > OUTPUT_LIMITS["html"]:
            raise RenderError(f"output 'html' is {len(html)} characters (limit 32768)")
        return html
    text = paragraphs(raw) if name in MULTILINE_OUTPUTS else one_line(raw)
    limit = compiled.text_limit if name == "text" else OUTPUT_LIMITS[name]
    return truncate(text, limit)
