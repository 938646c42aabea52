"""Hostile or broken templates fail safe: the fallback block is rendered, the reason kept."""

from __future__ import annotations

import gc
import logging
import time
from functools import cache

import pytest

from blocks.loading import BlockLibrary
from blocks.renderer import LAST_RESORT
from blocks.sandbox import Budget, RenderError, watch_collector
from tests.blocks.blocks_helpers import event, headline_block, with_block

ATTACKS = {
    "dunder": ("{{ event.__class__.__mro__ }}", "'__class__' is refused"),
    "string dunder": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "is refused"),
    "data dunder": ("{{ event.items[0].__init__ }}", "is refused"),
    "private": ("{{ event._data }}", "is refused"),
    "range": ("{% for i in range(10**9) %}x{% endfor %}", "range of 1000000000 items"),
    "string bomb": ("{{ 'a' * 10**9 }}", "repetition would build"),
    "list bomb": ("{{ ([1] * 10**9) | length }}", "repetition would build"),
    "huge power": ("{{ 9 ** 9 ** 9 }}", "power would exceed"),
    "huge product": (
        "{% set a = 10 ** 50 %}{% set b = a * a %}{% set c = b * b %}{{ c * c }}",
        "multiplication would exceed",
    ),
    "nested loops": (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}",
        "loop and call steps",
    ),
    "output bomb": ("{% for a in range(1000) %}{{ 'y' * 10000 }}{% endfor %}", "passed 65536"),
    "doubling": ("{% set a = 'x' * 1000 %}" + "{% set a = a ~ a %}" * 20 + "{{ a }}", "concat"),
    "replace bomb": ("{{ ('a' * 1000) | replace('a', 'a' * 1000) }}", "replace would build"),
    "join bomb": ("{{ range(1000) | join('x' * 10000) }}", "join would build"),
    "printf width": ("{{ '%999999999d' % 1 }}", "format widths"),
    "format filter": ("{{ '%999999999d' | format(1) }}", "format widths"),
    "str.format": ("{{ '{:>999999999}'.format(1) }}", "calling format is refused"),
    "ljust": ("{{ 'a'.ljust(10**9) }}", "calling ljust is refused"),
    "runtime error": ("{{ 1 / 0 }}", "ZeroDivisionError"),
    "bad format": ("{{ '%d' | format('abc') }}", "TypeError"),
}


@cache
def attack_library() -> BlockLibrary:
    files = [
        (f"user/{i}.yaml", headline_block(template).replace("id: x", f"id: attack{i}"))
        for i, (template, _) in enumerate(ATTACKS.values())
    ]
    from blocks.declarations import library_files
    from blocks.loading import library_from_files

    return library_from_files(library_files() + files)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attacks_render_the_fallback_with_the_reason(name: str) -> None:
    index = list(ATTACKS).index(name)
    started = time.perf_counter()
    rendered = attack_library().renderer.render(f"attack{index}", {}, event(), {})
    assert time.perf_counter() - started < 1.0
    assert rendered.fell_back
    assert rendered.block_id == "we_noticed"
    assert rendered.outputs["headline"] == "We noticed you liked this"
    assert ATTACKS[name][1] in (rendered.error or "")


def test_the_strict_form_raises_the_one_error_type() -> None:
    with pytest.raises(RenderError, match="range of"):
        attack_library().renderer.render_block("attack4", {}, event(), {})
    with pytest.raises(RenderError, match="unknown block"):
        attack_library().renderer.render_block("nope", {}, event(), {})


def test_a_failure_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dcb.blocks"):
        attack_library().renderer.render("attack4", {}, event(), {})
    assert "attack4 failed, rendering we_noticed instead: range of" in caplog.text


def test_huge_literals_are_not_folded_at_load_time() -> None:
    started = time.perf_counter()
    with_block(headline_block("{{ 'a' * 10**9 }}{{ 10 ** 10 ** 10 }}"))
    assert time.perf_counter() - started < 2.0


def test_render_time_is_bounded_on_the_injected_clock() -> None:
    ticks = iter(range(0, 10**6))

    def clock() -> float:
        return float(next(ticks))  # one second per reading

    library = with_block(
        headline_block("{% for i in range(5) %}{{ i }}{% endfor %}"), clock=clock, time_limit=2.5
    )
    rendered = library.renderer.render("x", {}, event(), {})
    assert rendered.fell_back and "time limit" in (rendered.error or "")


def test_step_budget_is_configurable() -> None:
    library = with_block(headline_block("{% for i in range(50) %}.{% endfor %}"), max_steps=20)
    assert "steps" in (library.renderer.render("x", {}, event(), {}).error or "")
    library = with_block(headline_block("{% for i in range(50) %}.{% endfor %}"), max_steps=200)
    assert not library.renderer.render("x", {}, event(), {}).fell_back


def test_a_failing_fallback_gives_the_last_resort_text() -> None:
    broken_fallback = headline_block("{{ 1 / 0 }}").replace("id: x", "id: we_noticed")
    library = with_block(broken_fallback)
    rendered = library.renderer.render("we_noticed", {}, event(), {})
    assert rendered.fell_back and rendered.outputs == LAST_RESORT
    assert "fallback we_noticed failed" in (rendered.error or "")


def test_lists_and_dicts_cannot_be_mutated() -> None:
    library = with_block(headline_block("{{ event.items.append(1) }}"))
    assert library.renderer.render("x", {}, event(), {}).fell_back


def test_loop_helpers_still_work() -> None:
    template = "{% for i in event.items %}{{ loop.index }}{{ loop.cycle('a', 'b') }}{% endfor %}"
    library = with_block(headline_block(template))
    rendered = library.renderer.render("x", {}, event(items=[{}, {}, {}]), {})
    assert rendered.outputs["headline"] == "1a2b3a"


def test_a_garbage_collection_during_a_render_is_not_charged_to_the_template() -> None:
    watch_collector()
    heap = [[i] for i in range(300_000)]  # enough containers for a collection of some ms
    started = time.thread_time()
    gc.collect()
    assert time.thread_time() - started > 0.002  # the collection itself took CPU time
    budget = Budget(time_limit=0.002)
    gc.collect()
    budget.tick()  # the template did nothing: no time charged
    del heap
