"""Every template renders in Swedish and English, as text and HTML, and names what the policy promises."""

from __future__ import annotations

from typing import Any

import pytest

from services.notifier import templates

CONTACT = "privacy@isopartner.se"
CONTEXT = templates.Context(contact_email=CONTACT, public_base_url="https://privacy.isopartner.se")

#: Valid params for every template (what dsar/consent and the fan-outs put in).
PARAMS: dict[str, dict[str, Any]] = {
    "verification_code": {"code": "482913", "expires_minutes": 30},
    "privacy_center_link": {"link": "https://privacy.example/s/tok123", "expires_minutes": 30},
    "request_received": {"request_id": "R-1", "right": "access", "due_date": "2025-12-01"},
    "deadline_extended": {
        "request_id": "R-1",
        "right": "portability",
        "reason": "Många system berörs",
        "due_date": "2026-02-01",
    },
    "export_ready": {
        "request_id": "R-1",
        "download_url": "https://privacy.isopartner.se/v1/exports/tok123",
        "expires_at": "2025-12-08T10:00:00Z",
    },
    "erasure_completed": {
        "request_id": "R-1",
        "retained": [{"system": "billing", "basis": "Bokföringslagen 7:2 (7 years)"}],
    },
    "request_rejected": {"request_id": "R-1", "right": "erasure", "reason": "Identity could not be verified"},
    "request_overdue": {"request_id": "R-1", "right": "access", "due_date": "2025-12-01T10:00:00+00:00"},
    "request_completed": {
        "request_id": "R-1",
        "right": "rectification",
        "informed": ["accounts", "partners"],
        "fields": ["email", "phone"],
    },
    "merger_notice": {
        "kind": "acquisition",
        "counterparty": "Acme Holding AB",
        "effective_date": "2026-03-01",
        "data_categories": ["contact", "account"],
        "notice_url": "https://isopartner.se/merger",
    },
    "policy_changed": {
        "version": "2026-01",
        "effective_date": "2026-02-01",
        "summary_sv": "Ny leverantör",
        "summary_en": "New vendor",
        "url": "https://isopartner.se/integritetspolicy",
    },
    "legal_disclosure": {
        "authority": "Polismyndigheten",
        "legal_basis": "Rättegångsbalken 27 kap.",
        "data_categories": ["contact"],
        "recipient_country": "SE",
        "outside_eea": False,
        "case_ref": "K-2025-1",
    },
}
#: Text that must appear in each template's body (besides controller and contact).
KEY_CONTENT: dict[str, dict[str, list[str]]] = {
    "verification_code": {"sv": ["482913", "30 minuter"], "en": ["482913", "30 minutes"]},
    "privacy_center_link": {"sv": ["https://privacy.example/s/tok123", "30 minuter", "en gång", "integritetscenter"],
                            "en": ["https://privacy.example/s/tok123", "30 minutes", "used once", "privacy center"]},
    "request_received": {"sv": ["R-1", "2025-12-01", "en månad"], "en": ["R-1", "2025-12-01", "one month"]},
    "deadline_extended": {
        "sv": ["Många system berörs", "2026-02-01", "12.3"],
        "en": ["Många system berörs", "2026-02-01", "12(3)"],
    },
    "export_ready": {"sv": ["/v1/exports/tok123", "2025-12-08"], "en": ["/v1/exports/tok123", "2025-12-08"]},
    "erasure_completed": {"sv": ["Bokföringslagen 7:2", "Fakturering"], "en": ["Bokföringslagen 7:2", "Billing"]},
    "request_rejected": {
        "sv": ["Identity could not be verified", "IMY", "www.imy.se"],
        "en": ["Identity could not be verified", "IMY", "www.imy.se"],
    },
    "request_overdue": {
        "sv": ["R-1", "2025-12-01 11:00 CET", "12.3", "IMY", "www.imy.se", "prövning i domstol"],
        "en": ["R-1", "2025-12-01 11:00 CET", "12(3)", "IMY", "www.imy.se", "judicial remedy"],
    },
    "request_completed": {
        "sv": ["R-1", "rättelse", "e-postadress, telefonnummer", "Kundkonton", "Partner", "artikel 19"],
        "en": ["R-1", "rectification", "email address, phone number", "Customer accounts", "Partners", "Article 19"],
    },
    "merger_notice": {
        "sv": ["Acme Holding AB", "2026-03-01", "kontaktuppgifter, kontouppgifter", "https://isopartner.se/merger"],
        "en": ["Acme Holding AB", "2026-03-01", "contact details, account details", "https://isopartner.se/merger"],
    },
    "policy_changed": {"sv": ["Ny leverantör", "2026-02-01"], "en": ["New vendor", "2026-02-01"]},
    "legal_disclosure": {"sv": ["Polismyndigheten", "Rättegångsbalken"], "en": ["Polismyndigheten", "Legal basis"]},
}


def test_every_template_has_params_and_expectations() -> None:
    assert set(PARAMS) == set(templates.TEMPLATE_NAMES) == set(KEY_CONTENT)


@pytest.mark.parametrize("locale", templates.LOCALES)
@pytest.mark.parametrize("name", templates.TEMPLATE_NAMES)
def test_renders_text_and_html_naming_controller_and_contact(name: str, locale: str) -> None:
    rendered = templates.render(name, locale, PARAMS[name], CONTEXT)
    assert rendered.locale == locale
    assert rendered.subject and "\n" not in rendered.subject
    for part in (rendered.text, rendered.html):
        assert "ISOPARTNER AB" in part
        assert CONTACT in part
        for expected in KEY_CONTENT[name][locale]:
            assert expected in part, f"{name}/{locale}: {expected!r} missing"
    assert rendered.html.lstrip().startswith("<!doctype html>")
    assert f'<html lang="{locale}">' in rendered.html
    assert "<html" not in rendered.text and "<p>" not in rendered.text
    assert "unsubscribe" not in (rendered.text + rendered.html).lower(), "transactional mail has no opt-out link"


@pytest.mark.parametrize("name", templates.TEMPLATE_NAMES)
def test_swedish_and_english_differ(name: str) -> None:
    sv = templates.render(name, "sv", PARAMS[name], CONTEXT)
    en = templates.render(name, "en", PARAMS[name], CONTEXT)
    assert sv.subject != en.subject
    assert sv.text != en.text


def test_swedish_is_the_default_locale() -> None:
    default = templates.render("verification_code", None, PARAMS["verification_code"], CONTEXT)
    unknown = templates.render("verification_code", "de", PARAMS["verification_code"], CONTEXT)
    assert default.locale == unknown.locale == "sv"
    assert "verifieringskod" in default.text


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_rejection_names_the_right_to_complain_to_imy(locale: str) -> None:
    rendered = templates.render("request_rejected", locale, PARAMS["request_rejected"], CONTEXT)
    for part in (rendered.text, rendered.html):
        assert "Integritetsskyddsmyndigheten (IMY)" in part or "Privacy Protection (IMY)" in part
        assert "www.imy.se" in part
    assert "Identity could not be verified" in rendered.text


def test_html_is_autoescaped_and_text_is_not() -> None:
    params = {**PARAMS["request_rejected"], "reason": "<script>alert(1)</script> & more"}
    context = templates.Context(contact_email=CONTACT, public_base_url="https://x", recipient_name="Åsa <b>")
    rendered = templates.render("request_rejected", "en", params, context)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in rendered.html
    assert "Hello Åsa &lt;b&gt;," in rendered.html
    assert "<script>alert(1)</script> & more" in rendered.text
    assert "Hello Åsa <b>," in rendered.text


def test_greeting_uses_the_name_only_when_known() -> None:
    named = templates.Context(contact_email=CONTACT, public_base_url="https://x", recipient_name="Karin")
    assert templates.render("verification_code", "sv", PARAMS["verification_code"], named).text.startswith("Hej Karin,")
    assert templates.render("verification_code", "sv", PARAMS["verification_code"], CONTEXT).text.startswith("Hej,")


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_marketing_footer_carries_the_unsubscribe_link(locale: str) -> None:
    url = "https://consent.isopartner.se/v1/unsubscribe/abc.def"
    context = templates.Context(contact_email=CONTACT, public_base_url="https://x", unsubscribe_url=url)
    rendered = templates.render("policy_changed", locale, PARAMS["policy_changed"], context)
    assert url in rendered.text
    assert f'href="{url}"' in rendered.html


def test_missing_param_is_a_clear_error() -> None:
    params = dict(PARAMS["request_rejected"])
    del params["reason"]
    with pytest.raises(templates.MissingParams, match=r"request_rejected needs param\(s\) reason"):
        templates.render("request_rejected", "sv", params, CONTEXT)


def test_strict_undefined_catches_what_the_declaration_misses() -> None:
    """A nested value a template uses but the spec cannot declare still fails loudly."""
    params = {"request_id": "R-1", "retained": [{"system": "billing"}]}  # no basis
    with pytest.raises(templates.MissingParams, match="basis"):
        templates.render("erasure_completed", "en", params, CONTEXT)


def test_unknown_template_is_refused() -> None:
    with pytest.raises(templates.UnknownTemplate, match="unknown template 'newsletter'"):
        templates.render("newsletter", "sv", {}, CONTEXT)


def test_export_link_is_built_from_the_token_and_public_base_url() -> None:
    params = {"request_id": "R-1", "export_token": "tok.sig", "expires_at": "2025-12-08"}
    rendered = templates.render("export_ready", "en", params, CONTEXT)
    assert "https://privacy.isopartner.se/v1/exports/tok.sig" in rendered.text


def test_erasure_without_retained_data_says_so() -> None:
    rendered = templates.render("erasure_completed", "en", {"request_id": "R-1", "retained": []}, CONTEXT)
    assert "We have not kept any of your personal data." in rendered.text


def test_subject_lines_cannot_carry_header_breaks() -> None:
    params = {**PARAMS["merger_notice"], "counterparty": "Acme\r\nBcc: victim@example.com"}
    rendered = templates.render("merger_notice", "en", params, CONTEXT)
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_policy_summary_follows_the_locale() -> None:
    sv = templates.render("policy_changed", "sv", PARAMS["policy_changed"], CONTEXT)
    en = templates.render("policy_changed", "en", PARAMS["policy_changed"], CONTEXT)
    assert "Ny leverantör" in sv.text and "New vendor" not in sv.text
    assert "New vendor" in en.text and "Ny leverantör" not in en.text


def test_legal_disclosure_outside_eea_is_named() -> None:
    params = {**PARAMS["legal_disclosure"], "recipient_country": "US", "outside_eea": True}
    assert "(utanför EU/EES)" in templates.render("legal_disclosure", "sv", params, CONTEXT).text
    assert "(outside the EU/EEA)" in templates.render("legal_disclosure", "en", params, CONTEXT).text


def _completed(locale: str, **params: Any) -> templates.RenderedEmail:
    return templates.render("request_completed", locale, {"request_id": "R-1", **params}, CONTEXT)


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_request_completed_says_what_was_done_for_each_right(locale: str) -> None:
    sv = locale == "sv"
    restricted = _completed(locale, right="restriction", informed=["billing", "consent"])
    for part in (restricted.text, restricted.html):
        assert ("begränsning av behandling" if sv else "restriction of processing") in part
        assert ("artikel 18.2" if sv else "Article 18(2)") in part
        assert ("Fakturering och bokföring" if sv else "Billing and bookkeeping") in part
        assert ("Samtyckesregister" if sv else "Consent records") in part

    lifted = _completed(locale, right="restriction", informed=["accounts"], lifted=True)
    # Sent before the lift takes effect (Art. 18(3)): it says so, and that the systems are being told.
    assert ("Begränsningen av behandlingen hävs" if sv else "is being lifted") in lifted.subject
    for part in (lifted.text, lifted.html):
        assert ("innan det sker" if sv else "before it happens") in part
        assert ("artikel 18.3" if sv else "Article 18(3)") in part
        assert ("Vi meddelar alla system" if sv else "We are telling every system") in part
    assert "18.2" not in lifted.text and "18(2)" not in lifted.text

    objection = _completed(
        locale,
        right="objection",
        informed=[],
        processing="marketing",
        purposes=["marketing_email", "profiling", "third_party_marketing"],
    )
    for part in (objection.text, objection.html):
        assert ("direktmarknadsföring" if sv else "direct marketing") in part
        assert ("marknadsföring via e-post" if sv else "marketing by email") in part
        assert ("profilering" if sv else "profiling") in part
        assert "artikel 19" not in part and "Article 19" not in part, "nobody to name: no list of recipients"

    upheld = _completed(
        locale,
        right="objection",
        informed=["analytics", "logs"],
        processing="legitimate_interest",
        purposes=["security"],
    )
    assert ("skydd av tjänsterna" if sv else "protecting the services") in upheld.text
    assert ("Säkerhetsloggar" if sv else "Security logs") in upheld.text


def test_request_completed_needs_lists_where_it_lists() -> None:
    with pytest.raises(templates.MissingParams, match="informed must be a list"):
        _completed("en", right="restriction", informed="accounts")
    with pytest.raises(templates.MissingParams, match=r"request_completed needs param\(s\) informed"):
        _completed("en", right="restriction")


@pytest.mark.parametrize(("minutes", "locale", "words"), [
    (1440, "en", "24 hours"), (1440, "sv", "24 timmar"), (60, "en", "1 hour"), (60, "sv", "1 timme"),
    (30, "en", "30 minutes"), (1, "sv", "1 minut"), (90, "en", "90 minutes"), ("soon", "en", "soon"),
])
def test_a_validity_period_reads_as_a_person_would_say_it(minutes: object, locale: str, words: str) -> None:
    assert templates.minutes_in_words(minutes, locale) == words


def test_the_verification_email_gives_a_day_long_code_in_hours() -> None:
    params = {**PARAMS["verification_code"], "expires_minutes": 1440}
    assert "valid for 24 hours." in templates.render("verification_code", "en", params, CONTEXT).text
    assert "gäller i 24 timmar." in templates.render("verification_code", "sv", params, CONTEXT).html


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_a_rectification_names_what_was_corrected_and_what_we_never_held(locale: str) -> None:
    sv = locale == "sv"
    email = _completed(locale, right="rectification", informed=["accounts"], fields=["email"], not_held=["phone"])
    for part in (email.text, email.html):
        assert ("Vi har rättat de här uppgifterna om dig: e-postadress" if sv
                else "We have corrected this information about you: email address") in part
        assert ("inget att rätta: telefonnummer" if sv else "nothing to correct: phone number") in part
    only_corrected = _completed(locale, right="rectification", informed=["accounts"], fields=["email"])
    assert ("inget att rätta" if sv else "nothing to correct") not in only_corrected.text


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_the_erasure_email_says_why_when_we_erased_on_our_own_initiative(locale: str) -> None:
    sv = locale == "sv"

    def opening(**params: Any) -> str:
        email = templates.render("erasure_completed", locale, {"request_id": "R-1", "retained": [], **params},
                                 CONTEXT)
        assert email.text.count("(") and email.html
        return email.text

    assert ("enligt din begäran" if sv else "as you asked") in opening()
    child = opening(ground="child_data", our_initiative=True)
    assert ("under 18 år" if sv else "under 18") in child and ("enligt din begäran" if sv else "as you asked") not in child
    assert ("inte har använts på länge" if sv else "has not been used for a long time") in opening(
        ground="retention_expired", our_initiative=True)
    assert ("enligt din begäran" if sv else "as you asked") in opening(ground="child_data", our_initiative=False)


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_a_request_closed_unverified_gives_its_reason_in_the_subjects_language(locale: str) -> None:
    sv = locale == "sv"
    params = {"request_id": "R-1", "right": "access", "reason": "identity was not verified within 14 days",
              "authority": "IMY", "authority_url": "https://www.imy.se", "unverified_after_minutes": 14 * 1440}
    params = {k: v for k, v in params.items() if k in templates.spec_of("request_rejected").required
              or k in ("reason", "unverified_after_minutes")}
    email = templates.render("request_rejected", locale, params, CONTEXT)
    for part in (email.text, email.html):
        assert ("inom 14 dagar" if sv else "within 14 days.") in part
        assert "identity was not verified" not in part or not sv
    assert ("inom 14 dagar.\n\nOm du" if sv else "within 14 days.\n\nIf you") in email.text, "its own paragraph"
    operator = templates.render("request_rejected", locale, {**params, "unverified_after_minutes": None}, CONTEXT)
    assert "identity was not verified within 14 days" in operator.text  # an operator's reason, as written


@pytest.mark.parametrize(("minutes", "words"), [(20160, "14 days"), (2880, "2 days"), (1440, "24 hours")])
def test_whole_days_from_two_up_read_as_days(minutes: int, words: str) -> None:
    assert templates.minutes_in_words(minutes, "en") == words


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_the_erasure_email_names_the_other_requests_it_closed(locale: str) -> None:
    sv = locale == "sv"
    closed = [{"request_id": "R-2", "right": "access"}]
    email = templates.render("erasure_completed", locale, {"request_id": "R-1", "retained": [],
                                                          "closed_requests": closed}, CONTEXT)
    for part in (email.text, email.html):
        assert ("Dina andra öppna begäranden har avslutats" if sv else "Your other open requests were closed") in part
        assert ("ärende R-2" if sv else "case R-2") in part
    alone = templates.render("erasure_completed", locale, {"request_id": "R-1", "retained": []}, CONTEXT)
    assert ("andra öppna" if sv else "other open requests") not in alone.text


def test_times_in_emails_are_stockholm_time() -> None:
    # Due on 30 April in Stockholm (received 31 March 00:30 there): the email says 30 April, not 29.
    email = templates.render("request_received", "sv", {"request_id": "R-1", "right": "access",
                                                        "due_date": "2024-04-29T22:30:00+00:00"}, CONTEXT)
    assert "2024-04-30 00:30 CEST" in email.text
    winter = templates.render("request_received", "en", {"request_id": "R-1", "right": "access",
                                                         "due_date": "2024-12-01T10:00:00Z"}, CONTEXT)
    assert "2024-12-01 11:00 CET" in winter.text


def test_a_swedish_erasure_email_gives_the_retention_basis_in_swedish_where_there_is_one() -> None:
    retained = [{"system": "billing", "basis": "Bokföringslagen 7:2: accounting records are kept for 7 years",
                 "basis_sv": "Bokföringslagen 7 kap. 2 §: räkenskapsinformation sparas i sju år"}]
    sv = templates.render("erasure_completed", "sv", {"request_id": "R-1", "retained": retained}, CONTEXT)
    en = templates.render("erasure_completed", "en", {"request_id": "R-1", "retained": retained}, CONTEXT)
    assert "räkenskapsinformation sparas i sju år" in sv.text and "accounting records" not in sv.text
    assert "accounting records are kept for 7 years" in en.text
    plain = templates.render("erasure_completed", "sv", {"request_id": "R-1", "retained": [
        {"system": "billing", "basis": "Some law"}]}, CONTEXT)
    assert "Some law" in plain.text, "without a Swedish text, the system's own"


@pytest.mark.parametrize(
    ("kind", "locale", "sentence"),
    [
        ("merger", "sv", "ISOPARTNER AB går samman med Acme Holding AB genom en fusion, med verkan från"),
        ("acquisition", "sv", "Acme Holding AB förvärvar ISOPARTNER AB, med verkan från"),
        ("asset_sale", "sv",
         "ISOPARTNER AB överlåter hela eller delar av sin verksamhet till Acme Holding AB, med verkan från"),
        ("reorganisation", "sv", "ISOPARTNER AB genomför en omorganisation som berör Acme Holding AB, med verkan från"),
        ("merger", "en", "ISOPARTNER AB is merging with Acme Holding AB, effective"),
        ("acquisition", "en", "Acme Holding AB is acquiring ISOPARTNER AB, effective"),
        ("asset_sale", "en", "ISOPARTNER AB is transferring all or part of its business to Acme Holding AB, effective"),
        ("reorganisation", "en", "ISOPARTNER AB is undergoing a reorganisation involving Acme Holding AB, effective"),
    ],
)
def test_a_merger_notice_says_who_acquires_merges_with_or_takes_over_whom(kind: str, locale: str, sentence: str) -> None:
    rendered = templates.render("merger_notice", locale, {**PARAMS["merger_notice"], "kind": kind}, CONTEXT)
    assert sentence in rendered.text
    assert sentence in rendered.html


def test_the_merger_notices_counterparty_is_escaped_in_html_only() -> None:
    params = {**PARAMS["merger_notice"], "counterparty": "Acme & <b>Co</b> AB"}
    for locale in templates.LOCALES:
        rendered = templates.render("merger_notice", locale, params, CONTEXT)
        assert "Acme & <b>Co</b> AB" in rendered.text
        assert "Acme &amp; &lt;b&gt;Co&lt;/b&gt; AB" in rendered.html and "<b>Co" not in rendered.html


# --- the privacy center's links, and ids in words ---------------------------------------------------

MANAGE_URL = "https://privacy.isopartner.se/manage/manage.tok"
MANAGED = templates.Context(contact_email=CONTACT, public_base_url="https://privacy.isopartner.se",
                            privacy_center_url="https://privacy.isopartner.se", manage_url=MANAGE_URL)
FOOTER = {"sv": "Hantera din integritet", "en": "Manage your privacy"}


@pytest.mark.parametrize("locale", templates.LOCALES)
@pytest.mark.parametrize("name", templates.TEMPLATE_NAMES)
def test_every_email_but_the_last_one_to_an_erased_person_links_to_manage_your_privacy(name: str, locale: str) -> None:
    rendered = templates.render(name, locale, PARAMS[name], MANAGED)
    if name == "erasure_completed":  # their data is gone: nothing left to manage
        assert MANAGE_URL not in rendered.text + rendered.html
        assert FOOTER[locale] not in rendered.text + rendered.html
        return
    assert f"{FOOTER[locale]}: " in rendered.text and MANAGE_URL in rendered.text
    assert f'<a href="{MANAGE_URL}">{FOOTER[locale]}</a>' in rendered.html


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_without_a_manage_link_the_footer_has_none(locale: str) -> None:
    rendered = templates.render("request_received", locale, PARAMS["request_received"], CONTEXT)
    assert FOOTER[locale] not in rendered.text + rendered.html


@pytest.mark.parametrize(("locale", "words"), [("sv", "Skriv in koden här"), ("en", "Type the code here")])
def test_the_verification_email_links_to_where_the_code_is_typed(locale: str, words: str) -> None:
    params = {**PARAMS["verification_code"], "request_id": "5f1c2b9e-0000-4000-8000-000000000001"}
    rendered = templates.render("verification_code", locale, params, MANAGED)
    url = "https://privacy.isopartner.se/verify/5f1c2b9e-0000-4000-8000-000000000001"
    assert url in rendered.text
    assert f'<a href="{url}">{words}</a>' in rendered.html
    # Without the request named there is nowhere to link to; the code alone still works by email.
    plain = templates.render("verification_code", locale, PARAMS["verification_code"], MANAGED)
    assert "/verify/" not in plain.text + plain.html


def test_the_verification_link_defaults_to_the_privacy_centers_local_address() -> None:
    params = {**PARAMS["verification_code"], "request_id": "R/1"}
    rendered = templates.render("verification_code", "en", params, CONTEXT)
    assert "http://localhost:6069/verify/R%2F1" in rendered.text  # escaped: a request id is one path segment


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_the_sign_in_email_is_transactional_and_escapes_its_link(locale: str) -> None:
    params = {"sign_in_url": 'https://privacy.isopartner.se/s/a"b<c', "expires_minutes": 30}
    rendered = templates.render("privacy_center_link", locale, params, MANAGED)
    assert 'https://privacy.isopartner.se/s/a"b<c' in rendered.text
    assert 'href="https://privacy.isopartner.se/s/a&#34;b&lt;c"' in rendered.html
    assert "unsubscribe" not in (rendered.text + rendered.html).lower()
    with pytest.raises(templates.MissingParams, match="sign_in_url"):
        templates.render("privacy_center_link", locale, {}, MANAGED)


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_the_export_link_opens_its_page_in_the_emails_language(locale: str) -> None:
    rendered = templates.render("export_ready", locale, PARAMS["export_ready"], CONTEXT)
    assert f"https://privacy.isopartner.se/v1/exports/tok123?lang={locale}" in rendered.text
    assert f'href="https://privacy.isopartner.se/v1/exports/tok123?lang={locale}"' in rendered.html


def test_the_swedish_merger_notice_names_the_data_categories_in_swedish() -> None:
    params = {**PARAMS["merger_notice"], "data_categories": ["contact", "account", "payment", "usage"]}
    rendered = templates.render("merger_notice", "sv", params, CONTEXT)
    listed = "kontaktuppgifter, kontouppgifter, betalningsuppgifter, hur du använder tjänsterna"
    for part in (rendered.text, rendered.html):
        assert listed in part
        assert "contact" not in part and "account" not in part
    english = templates.render("merger_notice", "en", params, CONTEXT)
    assert "contact details, account details, payment details, how you use the services" in english.text


@pytest.mark.parametrize("locale", templates.LOCALES)
def test_a_legal_disclosure_names_categories_in_words_and_keeps_unknown_ones_as_written(locale: str) -> None:
    params = {**PARAMS["legal_disclosure"], "data_categories": ["ip", "Loggar över <inloggningar>"]}
    rendered = templates.render("legal_disclosure", locale, params, CONTEXT)
    ip = {"sv": "IP-adresser", "en": "IP addresses"}[locale]
    assert f"{ip}, Loggar över <inloggningar>" in rendered.text
    assert f"{ip}, Loggar över &lt;inloggningar&gt;" in rendered.html
