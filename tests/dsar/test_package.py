"""Access and portability packages: the CSV a spreadsheet program opens runs nothing, and says the same
as the JSON beside it."""

from __future__ import annotations

import csv
import io

import pytest

from services.dsar import package


@pytest.mark.parametrize(("cell", "safe"), [
    ('=HYPERLINK("http://evil.example","click")', '\'=HYPERLINK("http://evil.example","click")'),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
    ("\t=1+1", "'\t=1+1"),
    ("+46 70 123 45 67", "+46 70 123 45 67"),  # a phone number stays as it is
    ("-12.5", "-12.5"),
    ("Anna Svensson", "Anna Svensson"),
    ("", ""),
])
def test_a_cell_that_would_run_as_a_formula_is_escaped(cell: str, safe: str) -> None:
    assert package.spreadsheet_safe(cell) == safe


def test_csv_has_one_row_per_value_with_formulas_escaped() -> None:
    fragment = {"system": "support", "records": [{"subject": "u1", "note": "=IMPORTXML(A1)"}], "vip": True}
    rows = list(csv.reader(io.StringIO(package.to_csv(fragment).decode("utf-8-sig"))))
    assert rows == [
        ["field", "value"],
        ["system", "support"],
        ["records[0].subject", "u1"],
        ["records[0].note", "'=IMPORTXML(A1)"],
        ["vip", "true"],
    ]


# --- the readable report (index.html) ---------------------------------------------------------------

import html as html_lib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import zipfile  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from privacy_runtime.datamap import load_data_map  # noqa: E402
from privacy_runtime.settings import DEFAULT_DATA_MAP  # noqa: E402
from services.dsar.cases import Case  # noqa: E402

DATA_MAP = load_data_map(DEFAULT_DATA_MAP)
NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _case(right: str = "access", export_format: str | None = None) -> Case:
    return Case(request_id="7d3c1e2a-0000-4000-8000-000000000001", subject="u-1", right=right, status="completed",
                received_at=NOW, due_at=NOW, identity_verified=True, requested_via="web_form",
                export_format=export_format)


def _fragments(locale: str) -> dict[str, package.Fragment]:
    return {
        "accounts": package.Fragment("done", {"system": "accounts", "records": [{"name": HOSTILE, "email": "a@b.se"}]}),
        "notifier": package.Fragment("done", {"system": "notifier", "directory": {"locale": locale, "email": "a@b.se"}}),
        "consent": package.Fragment("done", {
            "system": "consent",
            "registrations": [{"source": "seminar", "registered_at": "2026-01-05T09:00:00+00:00"}],
            "consent_history": [
                {"purpose": "marketing_email", "granted": True, "channel": "registration", "policy_version": "2021-10-30",
                 "effective_at": "2026-01-05T09:00:00+00:00"},
                {"purpose": "marketing_email", "granted": False, "channel": "email_footer",
                 "policy_version": HOSTILE, "effective_at": "2026-02-01T10:00:00+00:00"},
            ],
        }),
        "logs": package.Fragment("not_found", None),
        "billing": package.Fragment("done", {"system": "billing", "invoices": [{"number": "F-1", "total": 100}]}),
    }


def _zip(right: str = "access", export_format: str | None = None, locale: str = "sv") -> zipfile.ZipFile:
    case = _case(right, export_format)
    built = package.render(case, package.build(case, _fragments(locale), DATA_MAP, NOW), DATA_MAP)
    assert built.media_type == "application/zip" and built.filename.endswith(".zip")
    return zipfile.ZipFile(io.BytesIO(built.content))


def _visible(page: str) -> str:
    """The text a reader sees: tags and the inlined stylesheet gone, entities decoded."""
    body = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", body))


def test_the_package_opens_with_a_readable_report_beside_the_json() -> None:
    archive = _zip()
    names = [name.split("/")[-1] for name in archive.namelist()]
    assert names == ["index.html", "package.json"], "access as JSON: the report and the JSON"
    data = json.loads(archive.read(archive.namelist()[1]))
    assert data["locale"] == "sv" and data["systems"]["accounts"]["data"]["records"][0]["name"] == HOSTILE
    with_csv = [name.split("/")[-1] for name in _zip("portability", "csv").namelist()]
    assert with_csv[:2] == ["index.html", "package.json"]
    assert {"accounts.csv", "consent.csv", "information.csv"} <= set(with_csv)


def test_the_report_escapes_everything_the_subject_data_carries() -> None:
    page = _zip().read(_zip().namelist()[0]).decode()
    assert "<script" not in page and "<img" not in page
    assert html_lib.escape(HOSTILE, quote=False) in page or "&lt;script&gt;" in page
    assert HOSTILE in _visible(page), "shown as text, exactly"


def test_a_swedish_subjects_report_is_in_swedish_with_every_id_in_words() -> None:
    page = _zip(locale="sv").read(_zip().namelist()[0]).decode()
    assert '<html lang="sv">' in page
    text = _visible(page)
    for expected in (
        "Dina personuppgifter hos ISOPARTNER AB",
        "Vilka vi är", "Integritetsskyddsmyndigheten (IMY)",
        "Kundkonton", "identitetsuppgifter, kontaktuppgifter, kontouppgifter",  # what accounts holds
        "leverans av konto och tjänster (avtal (GDPR art. 6.1 b))",  # why, on which basis
        "så länge kontot finns",  # for how long
        "Marknadsföring via e-post", "USA", "EU:s standardavtalsklausuler (2021/914)",  # where, how transferred
        "7 år efter räkenskapsårets slut",
        "Registrering via en seminarieanmälan",
        "samtycke återkallat", "länken i ett e-postmeddelande", "marknadsföring via e-post",  # consent history
        "Säkerhetsloggar", "Det här systemet har inga uppgifter om dig.",
        "e-postadress",  # a field name in words
    ):
        assert expected in text, expected
    for raw in ("marketing_email", "service_delivery", "email_footer", "ipcom_group", "third_party_marketing"):
        assert raw not in text, f"raw id {raw!r} in the report"
    # The latest consent change first.
    assert text.index("samtycke återkallat") < text.index("samtycke lämnat")


def test_an_english_subjects_report_is_in_english() -> None:
    archive = _zip(locale="en")
    page = archive.read(archive.namelist()[0]).decode()
    assert '<html lang="en">' in page
    text = _visible(page)
    for expected in ("Your personal data at ISOPARTNER AB", "Customer accounts", "contact details",
                     "contract (GDPR Art. 6(1)(b))", "United States", "EU standard contractual clauses (2021/914)",
                     "consent withdrawn", "the link in an email", "Registered through a seminar sign-up"):
        assert expected in text, expected
    assert "Dina personuppgifter" not in text


def test_without_the_notifiers_directory_the_report_is_in_swedish() -> None:
    fragments = {k: v for k, v in _fragments("en").items() if k != "notifier"}
    assert package.subject_locale(fragments) == "sv"
    assert package.subject_locale(_fragments("en")) == "en"
    assert package.subject_locale({"notifier": package.Fragment("done", {"directory": {"locale": "<de>"}})}) == "sv"
