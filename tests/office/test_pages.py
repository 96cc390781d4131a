"""The office's pages in-process, fed by stand-in service answers (no stack): each page renders, needs
a signed-in operator, carries CSRF tokens and no script, and each action calls the service operator
endpoint it should, naming the operator."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from services.office import texts as office_texts
from services.office.app import create_app
from services.office.client import ServiceError
from services.office.deadletters import DeadLetter, NotFound
from services.office.settings import OfficeSettings

TOKEN = "bo-token-for-page-tests"
NOW = datetime.now(UTC)
RID = "5d0f3c7e-2b1a-4c6e-9f7d-3a8b1e6c2d40"  # fixed: test ids must be the same in every collection
CASE = {
    "request_id": RID, "right": "objection", "status": "in_progress", "received_at": NOW.isoformat(),
    "due_at": (NOW + timedelta(days=30)).isoformat(), "original_due_at": (NOW + timedelta(days=30)).isoformat(),
    "extended": False, "subject": "u-1", "overdue": False, "identity_verified": True, "requested_via": "email",
    "ground": None, "circumstance": None, "processing": "legitimate_interest", "export_format": None,
    "corrected_fields": [], "fields_not_held": [], "extension_months": 0, "extension_reason": None,
    "manual_review": True, "review_reason": "weigh the grounds", "review_code": "objection_to_weigh",
    "review_params": {}, "reason": None, "closed_at": None,
    "systems_told": [], "retained": [], "steps": [
        {"system": "accounts", "action": "export", "purpose": None, "phase": 1, "attempt": 1,
         "command_id": str(uuid.uuid4()), "outcome": None, "expect": None, "retained_basis": None}],
}


class FakeServices:
    """Answers like the services' operator APIs; records every POST."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, dict[str, Any], str | None]] = []
        self.gets: list[tuple[str, str, dict[str, Any] | None]] = []

    async def close(self) -> None:
        return None

    async def get(self, service: str, path: str, params: dict[str, Any] | None = None) -> Any:
        self.gets.append((service, path, params))
        if path == "/v1/admin/stats":
            return {"counts": {"overdue": 1, "due_soon": 2, "awaiting_review": 3, "open_in_progress": 4},
                    "weeks": [{"week": "2026-11-23", "received": 5, "completed": 2, "avg_days": 3.5}],
                    "days_to_complete": [1, 0, 1]}
        if path == "/v1/admin/commands":
            return {"service": service, "systems": [{"system": "accounts", "outstanding": 2, "overdue": 1,
                                                     "oldest": (NOW - timedelta(days=2)).isoformat(),
                                                     "oldest_respond_by": NOW.isoformat()}],
                    "outstanding": [{"request_id": RID, "action": "export", "purpose": None,
                                     "created_at": NOW.isoformat(), "respond_by": NOW.isoformat(), "attempts": 2,
                                     "overdue": True, "failed": False}] if (params or {}).get("system") else []}
        if path == "/v1/admin/emails":
            return {"totals": {"queued": 1, "failed": 2, "sent": 9}}
        if path == "/v1/admin/requests":
            return {"requests": [CASE], "count": 1, "total": 1}
        if path.endswith("/timeline"):
            if RID not in path:
                raise ServiceError("dsar", 404, "unknown request")
            return {"case": CASE, "events": [
                {"seq": 1, "at": NOW.isoformat(), "action": "case_received", "actor": "service:dsar", "detail": {}},
                {"seq": 2, "at": NOW.isoformat(), "action": "operator_approve", "actor": "operator:bo",
                 "detail": {"status": "identity_pending"}}],
                "commands": [{"system": "accounts", "action": "export", "purpose": None, "sent_at": NOW.isoformat(),
                              "respond_by": NOW.isoformat(), "attempts": 1, "answered_at": None, "answer": None}]}
        if path == "/v1/admin/audit/verify":
            if service == "dsar":
                return {"service": "dsar", "entries": 10, "ok": False, "problem_count": 1,
                        "first_broken": {"seq": 7, "at": NOW.isoformat(), "action": "case_received",
                                         "actor": "mallory", "ref": RID, "problem": "row was altered"}}
            return {"service": service, "entries": 3, "ok": True, "problem_count": 0, "first_broken": None}
        raise AssertionError(f"unexpected GET {service} {path}")

    async def post(self, service: str, path: str, body: dict[str, Any], operator: str | None = None) -> Any:
        self.posts.append((service, path, body, operator))
        if path.endswith("/resend") and path.startswith("/v1/admin/commands"):
            return {"resent": 1}
        return {}


class FakeReader:
    async def replay(self, topic: str, partition: int, offset: int) -> DeadLetter:
        raise NotFound("topic", f"{topic} is not a dead-letter topic", topic=topic)

    async def counts(self) -> dict[str, int]:
        return {"user-registered.dlq": 1}

    async def newest(self, per_topic: int) -> dict[str, list[DeadLetter]]:
        return {"user-registered.dlq": [DeadLetter("user-registered.dlq", 0, 4, NOW, "u-9", "not JSON",
                                                   "user-registered", "0", "12", "consent")]}


class FakeRuntime:
    name = "office"

    def __init__(self, settings: OfficeSettings) -> None:
        self.settings = settings
        self.dead_letters = FakeReader()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def ready(self) -> dict[str, str]:
        return {"runtime": "started"}

    @property
    def pool(self) -> Any:
        raise AssertionError("no database in page tests")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield None  # nothing is written: the actions tried here are refused before they write


@pytest.fixture
async def client(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TestClient, FakeServices]]:
    monkeypatch.setenv("PRIVACY_MASTER_KEY", base64.b64encode(b"p" * 32).decode())
    monkeypatch.setenv("ADMIN_TOKEN", "admin-page-token")
    monkeypatch.setenv("OFFICE_OPERATORS", f"bo:{hashlib.sha256(TOKEN.encode()).hexdigest()}")
    settings = OfficeSettings()  # type: ignore[call-arg]
    fake = FakeServices()
    app = create_app(settings, FakeRuntime(settings), fake)  # type: ignore[arg-type]
    # These tests read the English pages (the Swedish ones are checked in test_the_office_speaks_swedish...).
    async with TestClient(TestServer(app), headers={"Accept-Language": "en"}) as test_client:
        yield test_client, fake


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def signed_in(client: TestClient) -> str:
    page = await (await client.get("/sign-in")).text()
    answer = await client.post("/sign-in", data={"csrf_token": csrf(page), "token": TOKEN}, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/"
    return csrf(await (await client.get("/")).text())


@pytest.mark.parametrize("path", ["/", "/cases", f"/cases/{RID}", "/intake", "/systems", "/systems?system=accounts",
                                  "/dead-letters", "/audit"])
async def test_every_page_renders_for_an_operator_only(client: tuple[TestClient, FakeServices], path: str) -> None:
    test_client, _ = client
    answer = await test_client.get(path, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/sign-in"
    await signed_in(test_client)
    answer = await test_client.get(path)
    html = await answer.text()
    assert answer.status == 200, html
    assert "<script" not in html.lower() and " style=" not in html.lower()
    assert "Content-Security-Policy" in answer.headers
    assert "Signed in as <strong>bo</strong>" in html


async def test_pages_show_what_the_services_say(client: tuple[TestClient, FakeServices]) -> None:
    test_client, fake = client
    await signed_in(test_client)
    overview = await (await test_client.get("/")).text()
    assert overview.count('role="img"') == 2 and "user-registered.dlq" in overview
    audit = await (await test_client.get("/audit")).text()
    assert "row 7: Request received by mallory" in audit and "broken" in audit  # the action in words
    assert "not checked" in audit  # the office's own chain: no database here
    token = csrf(audit)
    before = len(fake.gets)
    await test_client.post("/audit/verify", data={"csrf_token": token})
    assert [g for g in fake.gets[before:] if g[1] == "/v1/admin/audit/verify" and g[2]] == [
        (s, "/v1/admin/audit/verify", {"fresh": "true"}) for s in ("consent", "dsar", "notifier")]
    case = await (await test_client.get(f"/cases/{RID}")).text()
    assert "Operator approved" in case and "<strong>bo</strong>" in case
    for action in ("approve", "extend", "resend"):
        assert f'action="/cases/{RID}/{action}"' in case
    assert f'action="/cases/{RID}/lift"' not in case  # not a completed restriction
    assert f'action="/cases/{RID}/reject"' not in case  # commands are out: systems may have acted
    dead = await (await test_client.get("/dead-letters")).text()
    assert "not JSON" in dead and 'action="/dead-letters/replay"' in dead
    assert (await test_client.get(f"/cases/{uuid.uuid4()}")).status == 404


async def test_actions_call_the_services_under_the_operators_name(client: tuple[TestClient, FakeServices]) -> None:
    test_client, fake = client
    token = await signed_in(test_client)
    answer = await test_client.post(f"/cases/{RID}/reject", allow_redirects=False, data={
        "csrf_token": token, "ground": "legitimate_grounds", "reason": "Fraud checks need it."})
    assert answer.status == 303
    service, path, body, operator = fake.posts[-1]
    assert (service, path, operator) == ("dsar", f"/v1/admin/requests/{RID}/reject", "bo")
    assert body["reason"].startswith("Compelling legitimate grounds") and body["reason"].endswith("Fraud checks need it.")
    await test_client.post(f"/cases/{RID}/extend", data={"csrf_token": token, "months": "2", "reason": "Slow."})
    assert fake.posts[-1][1:] == (f"/v1/admin/requests/{RID}/extend", {"months": 2, "reason": "Slow."}, "bo")
    other = str(uuid.uuid4())
    await test_client.post("/cases/approve", data=[("csrf_token", token), ("request_id", RID), ("request_id", other)])
    assert [p[1] for p in fake.posts[-2:]] == [f"/v1/admin/requests/{RID}/approve", f"/v1/admin/requests/{other}/approve"]
    await test_client.post("/systems/accounts/resend", data={"csrf_token": token})
    assert [(p[0], p[1], p[2]) for p in fake.posts[-2:]] == [
        ("dsar", "/v1/admin/commands/resend", {"system": "accounts"}),
        ("consent", "/v1/admin/commands/resend", {"system": "accounts"})]
    count = len(fake.posts)
    # Refused: no CSRF token, a forged one, a rejection without any reason, an extension of 3 months.
    assert (await test_client.post(f"/cases/{RID}/approve", data={})).status == 403
    assert (await test_client.post(f"/cases/{RID}/approve", data={"csrf_token": "x" * 43})).status == 403
    await test_client.post(f"/cases/{RID}/reject", data={"csrf_token": token, "ground": "", "reason": " "})
    await test_client.post(f"/cases/{RID}/extend", data={"csrf_token": token, "months": "3", "reason": "x"})
    assert len(fake.posts) == count


async def test_a_wrong_token_and_a_signed_out_browser_are_refused(client: tuple[TestClient, FakeServices]) -> None:
    test_client, fake = client
    page = await (await test_client.get("/sign-in")).text()
    token = csrf(page)
    answer = await test_client.post("/sign-in", data={"csrf_token": token, "token": "guess"})
    assert answer.status == 401 and "That token is not valid." in await answer.text()
    # The session is valid (CSRF passes) but nobody is signed in: actions are refused.
    assert (await test_client.post(f"/cases/{RID}/approve", data={"csrf_token": token})).status == 403
    assert fake.posts == []
    token = await signed_in(test_client)
    answer = await test_client.post("/sign-out", data={"csrf_token": token}, allow_redirects=False)
    assert answer.status == 303
    assert (await test_client.get("/cases", allow_redirects=False)).status == 303
    # ADMIN_TOKEN signs in as admin.
    page = await (await test_client.get("/sign-in")).text()
    await test_client.post("/sign-in", data={"csrf_token": csrf(page), "token": "admin-page-token"})
    assert "Signed in as <strong>admin</strong>" in await (await test_client.get("/")).text()


class VisibleText(HTMLParser):
    """The text a reader sees (no tags, attributes, or the chart's markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def visible(html: str) -> str:
    reader = VisibleText()
    reader.feed(html)
    return " ".join(reader.parts)


#: English sentences of the office's own that must not show on a Swedish page (and the other way round).
OWN_TEXTS = {lang: {texts[lang] for texts in office_texts.MESSAGES.values()
                    if texts["sv"] != texts["en"] and len(texts[lang]) > 12 and "{" not in texts[lang]}
             for lang in ("sv", "en")}
RAW_ID = re.compile(r"\b[a-z]+_[a-z_]+\b")


@pytest.mark.parametrize("lang", ["sv", "en"])
@pytest.mark.parametrize("path", ["/sign-in", "/", "/cases", f"/cases/{RID}", "/intake", "/systems",
                                  "/systems?system=accounts", "/dead-letters", "/audit", "/nowhere"])
async def test_every_page_speaks_the_chosen_language_and_names_no_raw_id(
        client: tuple[TestClient, FakeServices], lang: str, path: str) -> None:
    test_client, _ = client
    other = "en" if lang == "sv" else "sv"
    if path != "/sign-in":
        await signed_in(test_client)
    answer = await test_client.get(path, headers={"Accept-Language": f"{lang}-SE,{lang};q=0.9"})
    html = await answer.text()
    assert answer.status == (404 if path == "/nowhere" else 200), html
    assert f'<html lang="{lang}">' in html
    seen = visible(html)
    leaked = sorted(text for text in OWN_TEXTS[other] if text in seen)
    assert not leaked, leaked
    assert not RAW_ID.findall(seen), RAW_ID.findall(seen)
    if path != "/sign-in":
        assert {"sv": "Inloggad som", "en": "Signed in as"}[lang] in seen or path == "/nowhere"
    # The switch leads to the same page, query and all, in the other language.
    query = path.partition("?")[2]
    target = f'{path.partition("?")[0]}?{query + "&amp;" if query else ""}lang={other}'
    assert f'href="{target}"' in html, target


async def test_the_language_switch_is_remembered_and_keeps_the_page(client: tuple[TestClient, FakeServices]) -> None:
    test_client, fake = client
    token = await signed_in(test_client)
    swedish = await (await test_client.get("/cases?status=in_progress&q=u-1", headers={"Accept-Language": "sv"})).text()
    assert '<html lang="sv">' in swedish and "pågår" in visible(swedish)
    assert 'href="/cases?status=in_progress&amp;q=u-1&amp;lang=en"' in swedish
    english = await (await test_client.get("/cases?status=in_progress&q=u-1&lang=en")).text()
    assert '<html lang="en">' in english and RID in english
    assert fake.gets[-1][2] is not None and fake.gets[-1][2]["q"] == "u-1"  # the same search, in English
    # Remembered: the next page without ?lang= is English, whatever the browser prefers.
    case = await (await test_client.get(f"/cases/{RID}", headers={"Accept-Language": "sv"})).text()
    assert '<html lang="en">' in case and "Operator approved" in case
    # Swedish again from the case page: the same case, its actions and flash in Swedish.
    case = await (await test_client.get(f"/cases/{RID}?lang=sv")).text()
    assert '<html lang="sv">' in case and f"Ärende {RID}" in case and "Operatören godkände" in case
    refused = await test_client.post(f"/cases/{RID}/extend", allow_redirects=False,
                                     data={"csrf_token": token, "months": "3", "reason": "x"})
    assert refused.status == 303
    after = visible(await (await test_client.get(f"/cases/{RID}")).text())
    assert "En förlängning behöver 1 eller 2 månader" in after
    # A page answering a form switches to a page that can be opened (the form's own path is POST only).
    refused = await test_client.post("/intake/request", data={"csrf_token": token, "email": "x@example.se",
                                                              "right": "fly", "requested_via": "email"})
    html = await refused.text()
    assert refused.status == 400 and "välj rättigheten personen begär" in html
    assert 'href="/intake?lang=en"' in html and "/intake/request?lang" not in html
    # Charts speak the page's language too (their title and text alternative).
    overview = await (await test_client.get("/")).text()
    assert "<title id=" in overview and "Ärenden mottagna och avslutade per vecka" in overview
    assert "v. 48: mottagna 5, avslutade 2" in overview


async def test_a_refused_replay_is_explained_in_the_operators_language(client: tuple[TestClient, FakeServices]) -> None:
    test_client, _ = client
    token = await signed_in(test_client)
    await test_client.get("/dead-letters?lang=sv")
    answer = await test_client.post("/dead-letters/replay", allow_redirects=False,
                                    data={"csrf_token": token, "topic": "consent-changed", "partition": "0",
                                          "offset": "1"})
    assert answer.status == 303
    page = visible(await (await test_client.get("/dead-letters")).text())
    assert "Inte skickat igen: consent-changed är inget ämne för olästa meddelanden" in page


async def test_the_case_page_says_why_a_case_waits_in_the_operators_language(
        client: tuple[TestClient, FakeServices], monkeypatch: pytest.MonkeyPatch) -> None:
    test_client, _ = client
    await signed_in(test_client)
    sentence = "accounts, support could not lift the restriction; approve to retry or handle by hand"
    monkeypatch.setitem(CASE, "review_reason", sentence)
    monkeypatch.setitem(CASE, "review_code", "lift_failed")
    monkeypatch.setitem(CASE, "review_params", {"systems": "accounts, support"})
    swedish = visible(await (await test_client.get(f"/cases/{RID}?lang=sv")).text())
    said = "Kundkonton, Kundtjänst kunde inte häva begränsningen; godkänn för att försöka igen eller hantera för hand"
    assert f"Varför det väntar {said}" in swedish, swedish
    assert f"Fortsätt: {said}" in swedish, "the approve form says it too"
    assert sentence not in swedish and "could not lift" not in swedish
    english = visible(await (await test_client.get(f"/cases/{RID}?lang=en")).text())
    assert "Customer accounts, Customer support could not lift the restriction" in english
    # A code this office has no words for (a newer dsar), or a case flagged before codes: dsar's sentence.
    monkeypatch.setitem(CASE, "review_code", "a_reason_from_a_newer_dsar")
    assert f"Varför det väntar {sentence}" in visible(await (await test_client.get(f"/cases/{RID}?lang=sv")).text())
    monkeypatch.setitem(CASE, "review_code", None)
    assert f"Varför det väntar {sentence}" in visible(await (await test_client.get(f"/cases/{RID}?lang=sv")).text())
