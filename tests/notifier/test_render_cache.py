"""The notice renderer gives exactly what templates.render gives, for every template and locale, with
names and links that need escaping, and with values unset (other template branches)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from services.notifier import templates
from services.notifier.render_cache import NoticeRenderer
from tests.notifier.test_templates import CONTACT, PARAMS

NAMES = [None, "", "Karin", "Åsa <Ö> & \"Bo\" O'Neil", "  two  spaces\tand a tab "]
MANAGE = [None, "https://pc.example/manage?t=a.b&x=<1>"]
UNSUBSCRIBE = [None, "https://consent.example/unsubscribe?t=1&l=sv"]


def context(name: str | None, manage: str | None, unsubscribe: str | None) -> templates.Context:
    return templates.Context(contact_email=CONTACT, public_base_url="https://privacy.isopartner.se",
                             recipient_name=name, unsubscribe_url=unsubscribe,
                             privacy_center_url="https://pc.example", manage_url=manage)


@pytest.mark.parametrize("template", sorted(templates.TEMPLATE_NAMES))
@pytest.mark.parametrize("locale", [*templates.LOCALES, None])
def test_the_same_email_as_a_full_render(template: str, locale: str | None) -> None:
    renderer = NoticeRenderer()
    for _ in range(2):  # the first render fills the cache, the second comes from it
        for name, manage, unsubscribe in itertools.product(NAMES, MANAGE, UNSUBSCRIBE):
            ctx = context(name, manage, unsubscribe)
            assert renderer.render(template, locale, PARAMS[template], ctx) == templates.render(
                template, locale, PARAMS[template], ctx)


def test_a_notice_is_rendered_once_for_all_its_recipients(monkeypatch: pytest.MonkeyPatch) -> None:
    renders = 0
    full = templates.render

    def counting(*args: Any) -> templates.RenderedEmail:
        nonlocal renders
        renders += 1
        return full(*args)

    monkeypatch.setattr(templates, "render", counting)
    renderer = NoticeRenderer()
    params = PARAMS["merger_notice"]
    emails = [renderer.render("merger_notice", "sv", params, context(f"Person {i}", f"https://pc.example/m/{i}", None))
              for i in range(50)]
    assert renders == 1
    assert len({email.text for email in emails}) == 50 and "Person 7" in emails[7].text


def test_params_that_differ_are_rendered_apart() -> None:
    renderer = NoticeRenderer(size=2)
    one = {**PARAMS["merger_notice"], "counterparty": "Alpha AB"}
    two = {**PARAMS["merger_notice"], "counterparty": "Beta AB"}
    ctx = context("Karin", None, None)
    assert "Alpha AB" in renderer.render("merger_notice", "sv", one, ctx).text
    assert "Beta AB" in renderer.render("merger_notice", "sv", two, ctx).text
    assert "Alpha AB" in renderer.render("merger_notice", "en", one, ctx).text


def test_a_template_that_changes_a_value_is_rendered_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter on the name (here `upper`) would leave a changed placeholder behind: not cached."""
    real = templates.render

    def shouting(template: str, locale: str | None, params: Any, ctx: templates.Context) -> templates.RenderedEmail:
        rendered = real(template, locale, params, ctx)
        name = (ctx.recipient_name or "").upper()
        return templates.RenderedEmail(subject=rendered.subject, text=rendered.text + name,
                                       html=rendered.html, locale=rendered.locale)

    monkeypatch.setattr(templates, "render", shouting)
    ctx = context("Karin", None, None)
    assert NoticeRenderer().render("merger_notice", "sv", PARAMS["merger_notice"], ctx).text.endswith("KARIN")
