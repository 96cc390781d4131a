"""Email templates as pure functions: (template, locale, params, recipient name) -> subject, text, HTML.

Templates live in ``templates/<locale>/<name>.txt.j2`` and ``.html.j2`` and extend that locale's
``_layout``. The text template also defines the subject line (``{% block subject %}``). HTML is
autoescaped; every undefined variable raises (``StrictUndefined``), and each template declares the
params it needs so a caller gets one clear error naming what is missing (which the stream processor
turns into a dead letter).

Params of each template (what dsar/consent put into ``notification-requested``):

- ``verification_code``: ``code``, ``expires_minutes`` (optional ``request_id``: the email then links to
  ``$PRIVACY_CENTER_URL/verify/{request_id}``, where the code is typed)
- ``privacy_center_link``: ``sign_in_url`` (the privacy center's one-time ``/s/{token}``; or ``link``, the
  name the privacy center sends it under, sealed), optional ``expires_minutes`` (default 30)
- ``request_received``: ``request_id``, ``right``, ``due_date``
- ``deadline_extended``: ``request_id``, ``right``, ``reason``, ``due_date`` (the new deadline)
- ``export_ready``: ``request_id``, ``expires_at`` and ``download_url`` (or ``export_token``, from which
  the link ``$PUBLIC_BASE_URL/v1/exports/{token}`` is built)
- ``erasure_completed``: ``request_id``, ``retained`` (list of ``{"system", "basis"}``, may be empty)
- ``request_rejected``: ``request_id``, ``right``, ``reason``
- ``request_overdue``: ``request_id``, ``right``, ``due_date`` (the deadline that passed)
- ``request_completed``: ``request_id``, ``right``, ``informed`` (system ids told, Art. 19; may be empty),
  optional ``lifted`` (a lifted restriction), ``fields`` (names of rectified fields), ``processing`` and
  ``purposes`` (an objection: what was objected to, and the purposes stopped)
- ``merger_notice``: ``kind``, ``counterparty``, ``effective_date``, ``data_categories``, ``notice_url``
- ``policy_changed``: ``version``, ``effective_date``, ``summary_sv``, ``summary_en``, ``url``
- ``legal_disclosure``: ``authority``, ``legal_basis``, ``data_categories``, ``recipient_country``,
  ``outside_eea`` (optional ``case_ref``)

Every email names the controller (ISOPARTNER AB) and the privacy contact address, and (but the last
one to an erased subject) carries the "manage your privacy" link to the privacy center in its footer;
marketing email also carries the unsubscribe link. Ids a person would otherwise read raw (purposes,
systems, data categories, rights) are put in words by ``privacy_runtime.vocabulary``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import jinja2

from privacy_runtime import vocabulary

CONTROLLER = "ISOPARTNER AB"
LOCALES: tuple[str, ...] = ("sv", "en")
DEFAULT_LOCALE = "sv"
TEMPLATE_DIR = Path(__file__).with_name("templates")
DEFAULT_PRIVACY_CENTER_URL = "http://localhost:6069"
#: How long the privacy center's sign-in link is valid (../shared/DESIGN.md "Privacy center").
SIGN_IN_MINUTES = 30


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    required: frozenset[str]
    #: A notice about the subject's own rights request: still sent while processing is restricted.
    rights_request: bool = False
    #: The footer's "manage your privacy" link: not in the last email to an erased subject, whose
    #: data (and so anything to manage) is gone.
    manage_link: bool = True


def _spec(name: str, *params: str, rights_request: bool = False, manage_link: bool = True) -> TemplateSpec:
    return TemplateSpec(name, frozenset(params), rights_request, manage_link)


SPECS: dict[str, TemplateSpec] = {
    spec.name: spec
    for spec in (
        _spec("verification_code", "code", "expires_minutes", rights_request=True),
        _spec("request_received", "request_id", "right", "due_date", rights_request=True),
        _spec("deadline_extended", "request_id", "right", "reason", "due_date", rights_request=True),
        _spec("export_ready", "request_id", "download_url", "expires_at", rights_request=True),
        _spec("erasure_completed", "request_id", "retained", rights_request=True, manage_link=False),
        _spec("request_rejected", "request_id", "right", "reason", rights_request=True),
        _spec("request_overdue", "request_id", "right", "due_date", rights_request=True),
        _spec("request_completed", "request_id", "right", "informed", rights_request=True),
        _spec("merger_notice", "kind", "counterparty", "effective_date", "data_categories", "notice_url"),
        _spec("policy_changed", "version", "effective_date", "summary_sv", "summary_en", "url"),
        # Asked for by the person on the privacy center: like a rights request, sent while restricted.
        _spec("privacy_center_link", "sign_in_url", rights_request=True),
        _spec(
            "legal_disclosure",
            "authority",
            "legal_basis",
            "data_categories",
            "recipient_country",
            "outside_eea",
        ),
    )
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(SPECS)


class TemplateProblem(Exception):
    """A notification that cannot be rendered: unknown template, missing or bad params."""


class UnknownTemplate(TemplateProblem):
    pass


class MissingParams(TemplateProblem):
    pass


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    locale: str


@dataclass(frozen=True)
class Context:
    """What every email needs besides its own params."""

    contact_email: str
    public_base_url: str
    recipient_name: str | None = None
    #: Set for marketing email only: the footer link (and List-Unsubscribe target).
    unsubscribe_url: str | None = None
    #: Base of the privacy center's links (PRIVACY_CENTER_URL).
    privacy_center_url: str = DEFAULT_PRIVACY_CENTER_URL
    #: The footer's signed "manage your privacy" link ($PRIVACY_CENTER_URL/manage/{token}); None: none.
    manage_url: str | None = None


def spec_of(template: str) -> TemplateSpec:
    spec = SPECS.get(template)
    if spec is None:
        raise UnknownTemplate(f"unknown template {template!r}; known: {', '.join(TEMPLATE_NAMES)}")
    return spec


def locale_of(locale: str | None) -> str:
    return locale if locale in LOCALES else DEFAULT_LOCALE


#: Times in emails are the controller's local time (a deadline "by 30 April" is Swedish calendar).
EMAIL_TIME_ZONE = ZoneInfo("Europe/Stockholm")


def _moment(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(EMAIL_TIME_ZONE)
    return value.strftime("%Y-%m-%d %H:%M %Z").strip()


def _day(value: Any) -> str:
    """ISO date -> YYYY-MM-DD, ISO timestamp -> YYYY-MM-DD HH:MM CET/CEST (Stockholm); else as given."""
    if isinstance(value, datetime):
        return _moment(value)
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    try:
        if len(text) == 10:
            return date.fromisoformat(text).isoformat()
        return _moment(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return text


_UNITS = {
    "en": (("minute", "minutes"), ("hour", "hours"), ("day", "days")),
    "sv": (("minut", "minuter"), ("timme", "timmar"), ("dag", "dagar")),
}


def minutes_in_words(value: Any, locale: str) -> str:
    """A period as a person says it: 1440 -> "24 hours" / "24 timmar", 20160 -> "14 days", 30 -> "30
    minutes". Days from two days up: a day-long code reads better in hours."""
    try:
        minutes = int(value)
    except (TypeError, ValueError):
        return str(value)
    minute, hour, day = _UNITS[locale_of(locale)]
    if minutes >= 2 * 1440 and minutes % 1440 == 0:
        count, (one, many) = minutes // 1440, day
    elif minutes >= 60 and minutes % 60 == 0:
        count, (one, many) = minutes // 60, hour
    else:
        count, (one, many) = minutes, minute
    return f"{count} {one if count == 1 else many}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the code: no stat() of their files per email
    )
    env.filters["day"] = _day
    env.filters["minutes_in_words"] = minutes_in_words
    return vocabulary.install(env)


def with_language(url: str, lang: str) -> str:
    """A link to one of our pages, opened in the language of the email that carries it."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "lang"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("lang", lang)])))


def derive_params(
    template: str, params: Mapping[str, Any], public_base_url: str,
    privacy_center_url: str = DEFAULT_PRIVACY_CENTER_URL,
) -> dict[str, Any]:
    """Fill params a template can build itself (the export link from its token) or leave out."""
    derived = dict(params)
    if template == "export_ready" and "download_url" not in derived and derived.get("export_token"):
        derived["download_url"] = f"{public_base_url.rstrip('/')}/v1/exports/{derived['export_token']}"
    if template == "verification_code":  # where the code is typed, when the request is named
        request_id = derived.get("request_id")
        derived["verify_url"] = (
            f"{privacy_center_url.rstrip('/')}/verify/{quote(str(request_id), safe='')}" if request_id else None
        )
    if template == "privacy_center_link":
        if "sign_in_url" not in derived and derived.get("link"):
            derived["sign_in_url"] = derived["link"]
        derived.setdefault("expires_minutes", SIGN_IN_MINUTES)
    if template == "request_rejected":  # set when identity was not verified in time: said in the locale
        derived.setdefault("unverified_after_minutes", None)
    if template == "erasure_completed":  # optional: why, when the erasure was not the subject's request
        derived.setdefault("ground", None)
        derived.setdefault("our_initiative", False)
        derived.setdefault("closed_requests", [])
    if template == "request_completed":
        # Optional: only the right they belong to carries them.
        for name, default in {"lifted": False, "fields": [], "not_held": [], "processing": None,
                              "purposes": []}.items():
            derived.setdefault(name, default)
    return derived


def check_params(template: str, params: Mapping[str, Any]) -> TemplateSpec:
    spec = spec_of(template)
    missing = sorted(spec.required - set(params))
    if missing:
        raise MissingParams(
            f"template {template} needs param(s) {', '.join(missing)}; got {', '.join(sorted(params)) or 'none'}"
        )
    if template == "erasure_completed" and not isinstance(params["retained"], list):
        raise MissingParams("template erasure_completed: param retained must be a list of {system, basis}")
    if template == "request_completed":
        for name in ("informed", "fields", "not_held", "purposes"):
            if name in params and not isinstance(params[name], list):
                raise MissingParams(f"template request_completed: param {name} must be a list")
    return spec


_WHITESPACE = re.compile(r"\s+")


def render(template: str, locale: str | None, params: Mapping[str, Any], context: Context) -> RenderedEmail:
    """Render one email. Raises TemplateProblem with a message that names what is wrong."""
    params = derive_params(template, params, context.public_base_url, context.privacy_center_url)
    spec = check_params(template, params)
    lang = locale_of(locale)
    if template == "export_ready":  # the download page opens in the email's language
        params["download_url"] = with_language(str(params["download_url"]), lang)
    env = environment()
    variables: dict[str, Any] = {
        **params,
        "params": params,
        "controller": CONTROLLER,
        "contact_email": context.contact_email,
        "name": context.recipient_name,
        "unsubscribe_url": context.unsubscribe_url,
        "manage_url": context.manage_url if spec.manage_link else None,
        "locale": lang,
    }
    try:
        text_template = env.get_template(f"{lang}/{template}.txt.j2")
        subject = "".join(text_template.blocks["subject"](text_template.new_context(variables)))
        subject = _WHITESPACE.sub(" ", subject).strip()
        variables["subject"] = subject
        text = text_template.render(variables)
        html = env.get_template(f"{lang}/{template}.html.j2").render(variables)
    except jinja2.UndefinedError as exc:
        raise MissingParams(f"template {template} ({lang}): {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise UnknownTemplate(f"template file {exc.name} is missing") from exc
    except jinja2.TemplateError as exc:
        raise TemplateProblem(f"template {template} ({lang}) failed: {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise TemplateProblem(f"template {template} ({lang}): params of the wrong shape: {exc}") from exc
    return RenderedEmail(subject=subject, text=text, html=html, locale=lang)


def validate(template: str, locale: str | None, params: Mapping[str, Any], context: Context) -> None:
    """Render once with no recipient data, to refuse a bad notification before it is queued."""
    render(template, locale, params, context)
