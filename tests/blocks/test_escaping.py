"""Shopper data never reaches an output as markup, and only http(s) URLs come out."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.properties import CONTENT_OUTPUTS
from tests.blocks.blocks_helpers import event, headline_block, shipped, with_block
from tests.blocks.test_library import SHIPPED

SCRIPT = '<script>alert("x")</script>'


def test_a_script_in_a_product_name_never_reaches_the_html_raw() -> None:
    ev = event(items=[{"name": f"Jacket {SCRIPT}", "image_url": "https://s.example/i.jpg"}])
    for block in SHIPPED:
        outputs = shipped().renderer.render(block, {}, ev, {}).outputs
        assert "<script" not in outputs["html"].lower()
        assert "<script" not in "".join(outputs.values()).lower()


def test_html_escapes_data_it_prints_directly() -> None:
    library = with_block(
        "id: x\noutputs:\n  html: '<p>{{ event.name }}</p><a href=\"{{ event.url }}\">go</a>'\n"
    )
    ev = event(name=SCRIPT, url='https://x.example/" onclick="evil()')
    html = library.renderer.render("x", {}, ev, {}).outputs["html"]
    assert html.startswith("<p>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>")
    assert '" onclick' not in html


def test_plain_outputs_are_not_escaped_but_stripped() -> None:
    library = with_block(headline_block("{{ event.name }}"))
    ev = event(name="Tom & Jerry <b>mugs</b>\x00\x1b[31m")
    headline = library.renderer.render("x", {}, ev, {}).outputs["headline"]
    assert headline == "Tom & Jerry mugs [31m"


def test_only_http_urls_come_out() -> None:
    library = with_block(
        "id: x\noutputs:\n  cta_url: '{{ event.checkout_url }}'\n  image_url: '{{ event.image_url }}'\n"
    )
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.example", "ftp://x.example",
                "https://x.example/a b", 'https://x.example/"><script>'):  # fmt: skip
        outputs = library.renderer.render("x", {}, event(checkout_url=bad, image_url=bad), {})
        assert outputs.outputs["cta_url"] == "" and outputs.outputs["image_url"] == ""
    good = library.renderer.render("x", {}, event(checkout_url="https://x.example/c?a=1"), {})
    assert good.outputs["cta_url"] == "https://x.example/c?a=1"


def test_a_javascript_checkout_url_gives_no_link_in_the_html() -> None:
    outputs = (
        shipped()
        .renderer.render("cart_abandonment", {}, event(checkout_url="javascript:alert(1)"), {})
        .outputs
    )
    assert outputs["cta_url"] == "" and "javascript" not in outputs["html"]
    assert "<a " not in outputs["html"]


text = st.text(max_size=300)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60)
@given(
    block=st.sampled_from(SHIPPED),
    properties=st.dictionaries(text, values, max_size=6),
    profile=st.dictionaries(text, values, max_size=6),
    name=text,
)
def test_rendering_any_context_never_raises_past_the_renderer(
    block: str, properties: dict[str, object], profile: dict[str, object], name: str
) -> None:
    ev = event({"type": "checkout_started", "profile": {"email": "a@b.c"}})
    ev = replace(ev, properties=properties)
    for given_profile in (profile, {**profile, "city": name, "cart": {"items": [{"name": name}]}}):
        rendered = shipped().renderer.render(block, {}, ev, given_profile)
        assert set(rendered.outputs) == set(CONTENT_OUTPUTS)
        assert all(isinstance(v, str) for v in rendered.outputs.values())
        assert "<script" not in rendered.outputs["html"].lower()


@settings(max_examples=25)
@given(name=text, city=text, url=text)
def test_any_strings_in_known_fields_render_the_block_itself(
    name: str, city: str, url: str
) -> None:
    ev = event(items=[{"name": name, "url": url, "image_url": url}], checkout_url=url)
    for block in SHIPPED:
        rendered = shipped().renderer.render(block, {}, ev, {"city": city})
        assert not rendered.fell_back, rendered.error
        assert "<" not in rendered.outputs["headline"]
        assert rendered.outputs["cta_url"] in ("", url.strip())
