"""A block is checked when it is loaded, and every problem is reported as file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from blocks.loading import load_library
from connector.core.documents import DocumentError
from tests.blocks.blocks_helpers import event, headline_block, with_block


def problems(text: str) -> list[str]:
    with pytest.raises(DocumentError) as caught:
        with_block(text)
    return [str(problem) for problem in caught.value.problems]


def test_a_syntax_error_names_the_file_and_line() -> None:
    text = "id: x\noutputs:\n  body: |-\n    fine\n    {% if %}\n"
    [problem] = problems(text)
    assert problem.startswith("user/x.yaml:5: output 'body':")


def test_an_undeclared_param_is_refused_with_its_line() -> None:
    text = "id: x\nparams:\n  a: {type: string, default: hi}\noutputs:\n  headline: |-\n    {{ params.a }}\n    {{ params.b }}\n"
    assert problems(text) == [
        "user/x.yaml:7: output 'headline': params.b is not declared (declared: a)"
    ]
    assert "params.c is not declared" in problems(headline_block("{{ params['c'] }}"))[0]


def test_only_event_profile_and_params_are_visible() -> None:
    [problem] = problems(headline_block("{{ config }}{{ lipsum() }}"))
    assert "unknown variable(s) config, lipsum" in problem
    [problem] = problems(headline_block("{{ outputs.body }}"))
    assert "unknown variable(s) outputs" in problem
    with_block("id: x\noutputs:\n  text: '{{ outputs.headline }}'\n")


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{% macro m() %}{% endmacro %}", "macros are not allowed"),
        ("{% include 'a' %}", "include are not allowed"),
        ("{% set a %}x{% endset %}", "set blocks"),
        ("{% filter upper %}x{% endfilter %}", "filter blocks are not allowed"),
        ("{% for i in event.items recursive %}{% endfor %}", "recursive loops are not allowed"),
        ("{{ 'a' | center(9) }}", "filter 'center' is not available"),
        ("{{ event.x | safe }}", "filter 'safe' is not available"),
        ("{% if event.x is nonsense %}{% endif %}", "test 'nonsense' is not available"),
    ],
)
def test_risky_constructs_are_refused(template: str, reason: str) -> None:
    assert reason in problems(headline_block(template))[0]


def test_bad_outputs_and_limits_are_reported_together() -> None:
    text = "id: x\ntext_limit: 0\noutputs:\n  teaser: hi\n  body: [1]\n"
    found = problems(text)
    assert "user/x.yaml:2: text_limit must be a whole number from 1 to 1600, got 0" in found
    assert any(p.startswith("user/x.yaml:4: unknown output 'teaser'") for p in found)
    assert "user/x.yaml:5: output 'body' must be a template string" in found


def test_a_block_without_outputs_renders_empty_strings() -> None:
    library = with_block("id: x\n")
    rendered = library.renderer.render("x", {}, event(), {})
    assert not rendered.fell_back and set(rendered.outputs.values()) == {""}


def test_text_is_cut_to_its_declared_limit() -> None:
    library = with_block("id: x\ntext_limit: 20\noutputs:\n  text: '{{ \"word \" * 30 }}'\n")
    text = library.renderer.render("x", {}, event(), {}).outputs["text"]
    assert len(text) <= 20 and text.endswith("…")


def test_a_user_folder_adds_and_replaces_blocks(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(
        headline_block("Hello {{ profile.city }}").replace("id: x", "id: mine")
    )
    (tmp_path / "we_noticed.yaml").write_text(
        headline_block("Ours").replace("id: x", "id: we_noticed")
    )
    library = load_library(tmp_path)
    assert "mine" in library.catalogue and "personalized_offer" in library.catalogue
    assert (
        library.renderer.render("mine", {}, None, {"city": "Oslo"}).outputs["headline"]
        == "Hello Oslo"
    )
    assert library.renderer.render("we_noticed", {}, None, {}).outputs["headline"] == "Ours"


def test_a_missing_user_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="blocks folder does not exist"):
        load_library(tmp_path / "nope")
