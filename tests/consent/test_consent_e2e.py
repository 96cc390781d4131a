"""Consent end to end, through the real broker and database, with the service as a real process."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from schemas.events import (
    ConsentChanged,
    ConsentGrant,
    DsarDetails,
    DsarRequested,
    PrivacyAck,
    PrivacyCommand,
    UserRegistered,
)
from schemas.topics import (
    CONSENT_CHANGED,
    DSAR_REQUESTED,
    ERASURE_REQUESTED,
    PRIVACY_ACKS,
    PRIVACY_AUDIT,
    USER_REGISTERED,
    command_topic,
)
from services.consent.seals import LedgerReport
from services.consent.seals import verify as verify_ledger
from tests.helpers import (
    ServiceProcess,
    event_of,
    get_json,
    publish,
    publish_raw,
    read_topic,
    subject_id,
    wait_for_messages,
    wait_until,
)

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
async def consent(stack: Stack) -> AsyncIterator[ServiceProcess]:
    # Re-sends every 1-2 s, respond_by after 3 s, checked every second: the tests see each of them.
    async with ServiceProcess("consent", stack.env(), {
        "COMMAND_RESEND_BASE_SECONDS": "1", "COMMAND_RESEND_MAX_SECONDS": "2",
        "COMMAND_RESPOND_WITHIN_SECONDS": "3", "COMMAND_CHECK_SECONDS": "1", "LEDGER_ANCHOR_SECONDS": "1",
    }).running() as service:
        yield service


def _data(message: Any) -> dict[str, Any]:
    return json.loads(message.value)["data"]


def _for(subject: str) -> Callable[[Any], bool]:
    return lambda m: m.key == subject.encode()


async def _register(bootstrap: str, subject: str, *, country: str | None,
                    consents: Iterable[tuple[Any, bool]] = (), birth_date: date | None = None,
                    when: datetime | None = None) -> str:
    return await publish(bootstrap, USER_REGISTERED, UserRegistered(
        email=f"{subject}@example.com", name="Test Person", country=country, birth_date=birth_date,
        source="web", consents=[ConsentGrant(purpose=p, granted=g) for p, g in consents],
    ), subject=subject, time=when)


async def _decision(consent: ServiceProcess, subject: str, purpose: str) -> dict:
    async def known() -> dict | None:
        status, body = await get_json(f"{consent.url}/v1/decisions", params={"subject": subject, "purpose": purpose})
        return body if status == 200 else None

    return await wait_until(known, what=f"a decision for {subject}")


async def test_footer_opt_out_sends_one_suppress_resent_until_acked(stack: Stack, consent: ServiceProcess) -> None:
    """A user in Sweden opts out from the email footer: marketing_email is told to suppress, once per
    command id; the command is re-sent (same id) until the system acknowledges, and not after."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("se")
    await _register(bootstrap, subject, country="SE", consents=[("marketing_email", True)],
                    when=datetime.now(UTC) - timedelta(minutes=5))
    assert (await _decision(consent, subject, "marketing_email"))["allowed"] is True
    changed = ConsentChanged(purpose="marketing_email", granted=False, channel="email_footer", policy_version="2021-10-30")
    event_id = await publish(bootstrap, CONSENT_CHANGED, changed, subject=subject)
    await publish(bootstrap, CONSENT_CHANGED, changed, subject=subject, event_id=event_id)  # duplicate delivery

    topic = command_topic("marketing_email")
    sends = await wait_for_messages(bootstrap, topic, _for(subject), count=2, timeout=20)
    commands = [_data(m) for m in sends]
    assert {c["action"] for c in commands} == {"suppress"}
    assert {c["purpose"] for c in commands} == {"marketing_email"}
    assert len({c["command_id"] for c in commands}) == 1, "a re-send keeps the command id"
    assert len({json.loads(m.value)["id"] for m in sends}) == len(sends), "each send is its own event"
    assert (await _decision(consent, subject, "marketing_email"))["allowed"] is False

    command_id = commands[0]["command_id"]
    await publish(bootstrap, PRIVACY_ACKS, PrivacyAck(command_id=uuid.UUID(command_id), system="marketing_email",
                                                       status="done"), subject=subject)

    async def settled() -> int | None:
        before = len([m for m in await read_topic(bootstrap, topic) if _for(subject)(m)])
        await _sleep(4)
        after = len([m for m in await read_topic(bootstrap, topic) if _for(subject)(m)])
        return after if after == before else None

    await wait_until(settled, timeout=30, what="re-sends to stop after the ack")
    # Only marketing_email uses this purpose: no other system was told anything.
    for system in ("partners", "ipcom_group", "analytics"):
        assert not [m for m in await read_topic(bootstrap, command_topic(system)) if _for(subject)(m)]


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def _commands_of(bootstrap: str, system: str, subject: str) -> list[dict]:
    return [_data(m) for m in await read_topic(bootstrap, command_topic(system)) if _for(subject)(m)]


async def test_a_system_that_acks_is_not_asked_again_one_that_does_not_is(stack: Stack, consent: ServiceProcess) -> None:
    """A browser's GPC signal withdraws all sharing: partners and ipcom_group are both told. ipcom_group
    acknowledges and hears nothing more; partners stays silent and keeps being asked, same command ids."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("gpc")
    await _register(bootstrap, subject, country="US")
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="partner_sharing", granted=False, channel="gpc", policy_version="2021-10-30"), subject=subject)

    group = await wait_for_messages(bootstrap, command_topic("ipcom_group"), _for(subject))
    command = _data(group[0])
    assert (command["action"], command["purpose"]) == ("revoke_sharing", "group_sharing")
    await publish(bootstrap, PRIVACY_ACKS, PrivacyAck(
        command_id=uuid.UUID(command["command_id"]), system="ipcom_group", status="done"), subject=subject)

    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        async def acked() -> bool:
            return await conn.fetchval("SELECT acked_at IS NOT NULL FROM consent.commands WHERE command_id = $1",
                                       uuid.UUID(command["command_id"])) is True

        await wait_until(acked, what="the ipcom_group ack to be recorded")
    finally:
        await conn.close()
    group_sends = len(await _commands_of(bootstrap, "ipcom_group", subject))
    partner_sends = len(await _commands_of(bootstrap, "partners", subject))
    await _sleep(5)  # more than two re-send intervals (at most 2 s here)

    assert len(await _commands_of(bootstrap, "ipcom_group", subject)) == group_sends, "acked: not asked again"
    partners = await _commands_of(bootstrap, "partners", subject)
    assert len(partners) > partner_sends, "not acked: asked again"
    assert {(c["action"], c["purpose"]) for c in partners} == {
        ("revoke_sharing", "partner_sharing"), ("revoke_sharing", "third_party_marketing")}
    assert len({c["command_id"] for c in partners}) == 2, "re-sends keep their command ids"


async def _first_command_after_withdrawal(bootstrap: str, subject: str, purpose: str, channel: str, *,
                                         system: str) -> dict:
    """Register `subject` in the US, withdraw `purpose` there; returns the first command `system` gets."""
    await _register(bootstrap, subject, country="US")
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose=purpose, granted=False, channel=channel, policy_version="2021-10-30"), subject=subject)
    return dict(_data((await wait_for_messages(bootstrap, command_topic(system), _for(subject)))[0]))


async def test_a_system_that_could_not_apply_an_opt_out_is_asked_again_until_it_does(stack: Stack, consent: ServiceProcess) -> None:
    """A `failed` answer is not a confirmation: the suppress stays outstanding, is audited and re-sent with
    the same command id; once the system answers done it is not asked again."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("failed-ack")
    command = await _first_command_after_withdrawal(bootstrap, subject, "marketing_email", "email_footer",
                                                    system="marketing_email")
    command_id = uuid.UUID(command["command_id"])
    await publish(bootstrap, PRIVACY_ACKS, PrivacyAck(
        command_id=command_id, system="marketing_email", status="failed", detail="list service down"),
        subject=subject)

    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        async def audited() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM consent.audit_log WHERE action = 'command_failed' AND ref = $1",
                str(command_id)))

        await wait_until(audited, what="the failed answer to be audited")
        row = await conn.fetchrow("SELECT acked_at, ack_status FROM consent.commands WHERE command_id = $1",
                                  command_id)
        assert row["acked_at"] is None and row["ack_status"] == "failed"
        before = len(await _commands_of(bootstrap, "marketing_email", subject))
        await wait_for_messages(bootstrap, command_topic("marketing_email"), _for(subject), count=before + 1)
        assert {c["command_id"] for c in await _commands_of(bootstrap, "marketing_email", subject)} == {
            str(command_id)}, "re-sent with the same command id"

        await publish(bootstrap, PRIVACY_ACKS, PrivacyAck(
            command_id=command_id, system="marketing_email", status="done"), subject=subject)

        async def applied() -> bool:
            return await conn.fetchval("SELECT ack_status FROM consent.commands WHERE command_id = $1",
                                       command_id) == "done"

        await wait_until(applied, what="the done answer to settle the command")
    finally:
        await conn.close()
    sends = len(await _commands_of(bootstrap, "marketing_email", subject))
    await _sleep(5)
    assert len(await _commands_of(bootstrap, "marketing_email", subject)) == sends, "applied: not asked again"


async def test_a_command_unacknowledged_past_respond_by_is_reported_once(stack: Stack, consent: ServiceProcess) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("late-ack")
    command = await _first_command_after_withdrawal(bootstrap, subject, "group_sharing", "preference_center",
                                                    system="ipcom_group")

    def overdue(m: Any) -> bool:
        event = event_of(m) or {}
        return event.get("data", {}).get("action") == "command_overdue" and event.get("subject") == subject

    reports = await wait_for_messages(bootstrap, PRIVACY_AUDIT, overdue, timeout=20)
    assert reports[0].value and command["command_id"] in reports[0].value.decode()
    _, body = await get_json(f"{consent.url}/metrics")
    assert 'privacy_commands_overdue_reported_total{system="ipcom_group"}' in str(body)
    await _sleep(3)  # further checks do not report it again
    assert len([m for m in await read_topic(bootstrap, PRIVACY_AUDIT) if overdue(m)]) == 1


async def test_an_objector_who_grants_marketing_again_is_not_unsuppressed(stack: Stack, consent: ServiceProcess) -> None:
    """An objection to direct marketing is absolute: a later grant is recorded, but marketing_email
    is not told to unsuppress (the decision still denies)."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("objector")
    now = datetime.now(UTC)
    await _register(bootstrap, subject, country="US", when=now - timedelta(minutes=10))
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=uuid.uuid4(), right="objection", identity_verified=True, requested_via="web_form",
        details=DsarDetails(processing="marketing")), subject=subject, time=now - timedelta(minutes=5))
    suppress = await wait_for_messages(bootstrap, command_topic("marketing_email"), _for(subject))
    assert _data(suppress[0])["action"] == "suppress"

    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=True, channel="preference_center", policy_version="2021-10-30"),
        subject=subject, time=now - timedelta(minutes=1))
    # A later withdrawal of another purpose, on the same partition: once its command is out, the grant
    # before it has been applied.
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="group_sharing", granted=False, channel="preference_center", policy_version="2021-10-30"),
        subject=subject)
    await wait_for_messages(bootstrap, command_topic("ipcom_group"), _for(subject))
    assert "unsuppress" not in {c["action"] for c in await _commands_of(bootstrap, "marketing_email", subject)}
    assert (await _decision(consent, subject, "marketing_email"))["allowed"] is False


async def test_a_refusal_at_sign_up_in_an_opt_out_country_is_passed_on(stack: Stack, consent: ServiceProcess) -> None:
    """In the US marketing email is allowed until withdrawn, so a "no" at sign-up must reach the
    marketing system; in Sweden the default already is no, and nothing is sent."""
    bootstrap = stack.endpoints.kafka_bootstrap
    us, se = subject_id("no-us"), subject_id("no-se")
    await _register(bootstrap, us, country="US", consents=[("marketing_email", False), ("partner_sharing", True)])
    await _register(bootstrap, se, country="SE", consents=[("marketing_email", False)])

    async def suppressed() -> list[dict]:
        return await _commands_of(bootstrap, "marketing_email", us)

    commands = await wait_until(suppressed, what="suppress for the US refusal")
    assert [(c["action"], c["purpose"]) for c in commands] == [("suppress", "marketing_email")]
    await _decision(consent, se, "marketing_email")  # the Swedish registration is applied by now
    # Markers, each after a registration and causing a command on the topic it checks: once the marker's
    # command is out, anything the registration had issued would have been relayed before it (the relay
    # publishes in the order commands were written, one subject's on one partition).
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=True, channel="preference_center", policy_version="2021-10-30"),
        subject=se)
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="partner_sharing", granted=False, channel="preference_center", policy_version="2021-10-30"),
        subject=us)
    await wait_for_messages(bootstrap, command_topic("marketing_email"), _for(se))
    await wait_for_messages(bootstrap, command_topic("partners"), _for(us))
    # (Sets: an unanswered command is re-sent, with its id, every second or two in this module.)
    se_commands = await _commands_of(bootstrap, "marketing_email", se)
    assert {(c["action"], c["purpose"], c["command_id"]) for c in se_commands} == {
        ("unsuppress", "marketing_email", se_commands[0]["command_id"])}, "the Swedish refusal sent nothing"
    us_commands = await _commands_of(bootstrap, "partners", us)
    assert {(c["action"], c["purpose"], c["command_id"]) for c in us_commands} == {
        ("revoke_sharing", "partner_sharing", us_commands[0]["command_id"])}, (
        "a yes where yes is the default changes nothing")


async def test_a_newer_registration_from_another_country_tells_systems_what_the_move_changes(stack: Stack, consent: ServiceProcess) -> None:
    """Registered in the US (sharing allowed until withdrawn), then again, later, from Sweden: what
    Sweden needs consent for and was never given is withdrawn downstream; an older registration
    arriving late moves nothing."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("moved")
    now = datetime.now(UTC)
    await _register(bootstrap, subject, country="US", consents=[("group_sharing", True)],
                    when=now - timedelta(hours=2))
    assert (await _decision(consent, subject, "partner_sharing"))["allowed"] is True
    await _register(bootstrap, subject, country="SE", when=now - timedelta(hours=1))

    async def revoked() -> list[dict]:
        return await _commands_of(bootstrap, "partners", subject)

    commands = await wait_until(revoked, what="partners told of the move to Sweden")
    assert [(c["action"], c["purpose"]) for c in commands] == [("revoke_sharing", "partner_sharing")]
    assert [(c["action"], c["purpose"]) for c in await _commands_of(bootstrap, "marketing_email", subject)] == [
        ("suppress", "marketing_email")]
    assert not await _commands_of(bootstrap, "ipcom_group", subject), "group sharing was consented to"

    await _register(bootstrap, subject, country="CA", when=now - timedelta(hours=3))  # older: loses

    async def kept() -> bool:
        status, body = await get_json(f"{consent.url}/v1/subjects/{subject}/consents")
        return status == 200 and len(body["registrations"]) == 3

    await wait_until(kept, what="the late registration to be recorded")
    await _sleep(1)  # anything it had issued would be relayed by now
    assert (await _decision(consent, subject, "partner_sharing"))["allowed"] is False
    assert len({c["command_id"] for c in await _commands_of(bootstrap, "partners", subject)}) == 1, "re-sends only"


async def test_sharing_defaults_follow_jurisdiction(stack: Stack, consent: ServiceProcess) -> None:
    """Sweden: partner_sharing needs opt-in. US: allowed until withdrawn. No country: as Sweden."""
    bootstrap = stack.endpoints.kafka_bootstrap
    se, us, unknown = subject_id("se"), subject_id("us"), subject_id("xx")
    await _register(bootstrap, se, country="SE")
    await _register(bootstrap, us, country="US")
    await _register(bootstrap, unknown, country=None)
    assert (await _decision(consent, se, "partner_sharing"))["allowed"] is False
    us_decision = await _decision(consent, us, "partner_sharing")
    assert us_decision["allowed"] is True
    assert (await _decision(consent, unknown, "partner_sharing"))["allowed"] is False

    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="partner_sharing", granted=False, channel="preference_center", policy_version="2021-10-30"),
        subject=us)

    async def withdrawn() -> bool:
        return (await _decision(consent, us, "partner_sharing"))["allowed"] is False

    await wait_until(withdrawn, what="US withdrawal to apply")
    revokes = await wait_for_messages(bootstrap, command_topic("partners"), _for(us))
    assert _data(revokes[0])["action"] == "revoke_sharing"


async def test_late_older_event_is_recorded_but_does_not_override(stack: Stack, consent: ServiceProcess) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("late")
    now = datetime.now(UTC)
    await _register(bootstrap, subject, country="SE", when=now - timedelta(hours=2))
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="analytics", granted=False, channel="cookie_banner", policy_version="v2"),
        subject=subject, time=now - timedelta(minutes=1))
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="analytics", granted=True, channel="cookie_banner", policy_version="v1"),
        subject=subject, time=now - timedelta(hours=1))

    async def both_recorded() -> dict | None:
        status, body = await get_json(f"{consent.url}/v1/subjects/{subject}/consents")
        return body if status == 200 and len(body["history"]) == 2 else None

    body = await wait_until(both_recorded, what="both ledger entries")
    analytics = next(p for p in body["purposes"] if p["purpose"] == "analytics")
    assert analytics["allowed"] is False and analytics["consent"]["policy_version"] == "v2"


async def test_a_grant_stamped_hours_ahead_does_not_outrank_a_later_withdrawal(stack: Stack, consent: ServiceProcess) -> None:
    """A producer's clock runs 12 hours ahead: its grant counts, for ordering, as of its arrival. The
    subject then withdraws through the preference center: the decision says no. Both times stay in the
    ledger (the stated one is what the history shows). A registration stamped ahead likewise does not
    outrank a later real one."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("ahead")
    now = datetime.now(UTC)
    await _register(bootstrap, subject, country="US", when=now + timedelta(hours=12))
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=True, channel="api", policy_version="ahead"),
        subject=subject, time=now + timedelta(hours=12))

    async def granted() -> dict | None:
        decision = await _decision(consent, subject, "marketing_email")
        return decision if decision["allowed"] and decision["basis"] == "consent" else None

    await wait_until(granted, what="the grant stamped ahead applied")
    await _register(bootstrap, subject, country="SE", when=datetime.now(UTC))
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=False, channel="preference_center", policy_version="withdrawn"),
        subject=subject, time=datetime.now(UTC))

    async def both_recorded() -> dict | None:
        status, body = await get_json(f"{consent.url}/v1/subjects/{subject}/consents")
        return body if status == 200 and {h["policy_version"] for h in body["history"]} >= {
            "ahead", "withdrawn"} and len(body["registrations"]) == 2 else None

    body = await wait_until(both_recorded, what="the withdrawal and the second registration recorded")
    decision = await _decision(consent, subject, "marketing_email")
    assert decision["allowed"] is False, decision
    assert body["jurisdiction"] == "SE", "the registration stamped ahead must not outrank the later one"
    ahead = next(h for h in body["history"] if h["policy_version"] == "ahead")
    assert datetime.fromisoformat(ahead["effective_at"]) == now + timedelta(hours=12), "stated time kept"
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        rows = await conn.fetch("SELECT policy_version, effective_at, ordered_at, recorded_at "
                                "FROM consent.consent_ledger WHERE subject = $1", subject)
    finally:
        await conn.close()
    kept = {r["policy_version"]: r for r in rows}
    assert kept["ahead"]["ordered_at"] < kept["withdrawn"]["ordered_at"] <= kept["withdrawn"]["recorded_at"] + \
        timedelta(minutes=5)
    assert kept["ahead"]["ordered_at"] <= kept["ahead"]["recorded_at"], "ordered by arrival, not the stated time"


async def test_every_registration_is_kept_with_its_source(stack: Stack, consent: ServiceProcess) -> None:
    """A second registration (another source, another country) updates the profile; both stay on record."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("twice")
    now = datetime.now(UTC)
    first = await _register(bootstrap, subject, country="SE", when=now - timedelta(days=30))
    await publish(bootstrap, USER_REGISTERED, UserRegistered(
        email=f"{subject}@example.com", name="Test Person", country="NO", source="seminar"),
        subject=subject, time=now - timedelta(days=1))
    await publish(bootstrap, USER_REGISTERED, UserRegistered(  # the first one, delivered again
        email=f"{subject}@example.com", name="Test Person", country="SE", source="web"),
        subject=subject, time=now - timedelta(days=30), event_id=first)

    # A marker after them on the same partition: once it is in the history, all three were applied.
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="analytics", granted=False, channel="api", policy_version="marker"), subject=subject)

    async def applied() -> dict | None:
        status, body = await get_json(f"{consent.url}/v1/subjects/{subject}/consents")
        return body if status == 200 and any(h["policy_version"] == "marker" for h in body["history"]) else None

    body = await wait_until(applied, what="the registrations and the marker")
    assert [(r["source"], r["country"]) for r in body["registrations"]] == [("web", "SE"), ("seminar", "NO")]
    assert body["jurisdiction"] == "NO", "the newer registration's country applies"


async def test_under_18_registration_requests_erasure_and_denies_marketing(stack: Stack, consent: ServiceProcess) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("kid")
    birth = date.today().replace(year=date.today().year - 15)
    await _register(bootstrap, subject, country="US", birth_date=birth,
                    consents=[("marketing_email", True), ("third_party_marketing", True)])
    erasures = await wait_for_messages(bootstrap, ERASURE_REQUESTED, _for(subject))
    assert _data(erasures[0])["ground"] == "child_data"
    for purpose in ("marketing_email", "third_party_marketing", "partner_sharing", "group_sharing", "profiling"):
        assert (await _decision(consent, subject, purpose))["allowed"] is False, purpose


async def test_http_errors_are_clear(stack: Stack, consent: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=consent.url) as client:
        assert (await client.get("/v1/decisions", params={"subject": "nobody-here", "purpose": "analytics"})).status_code == 404
        bad = await client.get("/v1/decisions", params={"subject": "x", "purpose": "spam"})
        assert bad.status_code == 400 and "unknown purpose" in bad.json()["error"]
        assert (await client.get("/v1/decisions", params={"purpose": "analytics"})).status_code == 400
        assert (await client.get("/v1/subjects/nobody-here/consents")).status_code == 404
        forged = await client.post("/v1/unsubscribe/not-a-token")
        assert forged.status_code == 400


@pytest.mark.parametrize("topic", [USER_REGISTERED, CONSENT_CHANGED, PRIVACY_ACKS, command_topic("consent")])
async def test_malformed_messages_are_dead_lettered_and_the_next_is_processed(stack: Stack, consent: ServiceProcess, topic: str) -> None:
    bootstrap = stack.endpoints.kafka_bootstrap
    marker = subject_id("bad")
    bad_values = [
        b"{not json",
        json.dumps({"hello": "world"}).encode(),
        json.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "type": topic, "source": "urn:test",
                    "time": datetime.now(UTC).isoformat(), "subject": marker,
                    "datacontenttype": "application/json", "data": {"purpose": 42}}).encode(),
    ]
    for value in bad_values:
        await publish_raw(bootstrap, topic, marker.encode(), value, headers=[("trace", b"t1")])
    letters = await wait_for_messages(bootstrap, f"{topic}.dlq", _for(marker), count=3)
    for letter in letters:
        headers = dict((k, bytes(v)) for k, v in letter.headers)
        assert headers["x-original-topic"] == topic.encode()
        assert headers["trace"] == b"t1", "original headers are kept"
        assert headers["x-error"] and headers["x-original-partition"] is not None
        assert int(headers["x-original-offset"]) >= 0
    assert {bytes(m.value) for m in letters} == set(bad_values), "values are kept unchanged"
    # The service carries on: a valid event after them is processed.
    subject = subject_id("next")
    await _register(bootstrap, subject, country="SE")
    assert (await _decision(consent, subject, "service_delivery"))["allowed"] is True


async def _command_consent(bootstrap: str, subject: str, action: str, *, command_id: uuid.UUID | None = None,
                           nth: int = 1, **extra: Any) -> dict[str, Any]:
    """Send the consent service a command on its own topic; returns its (`nth`) ack's data."""
    command_id = command_id or uuid.uuid4()
    await publish(bootstrap, command_topic("consent"), PrivacyCommand(
        command_id=command_id, system="consent", action=action,
        respond_by=datetime.now(UTC) + timedelta(days=7), **extra), subject=subject)
    acks = await wait_for_messages(
        bootstrap, PRIVACY_ACKS, lambda m: (event_of(m) or {}).get("data", {}).get("command_id") == str(command_id),
        count=nth)
    return dict(_data(acks[nth - 1]))


async def test_restriction_rectification_and_export_commands_act_on_the_ledger(stack: Stack, consent: ServiceProcess) -> None:
    """As a downstream system: restrict denies every purpose but storage until lifted; rectify moves the
    jurisdiction (and so the defaults); export returns the ledger, the registrations and the receipts."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("cmds")
    await _register(bootstrap, subject, country="US", consents=[("analytics", True)],
                    when=datetime.now(UTC) - timedelta(minutes=5))
    assert (await _decision(consent, subject, "partner_sharing"))["allowed"] is True

    assert (await _command_consent(bootstrap, subject, "restrict"))["status"] == "done"
    for purpose in ("partner_sharing", "analytics", "service_delivery"):
        decision = await _decision(consent, subject, purpose)
        assert decision["allowed"] is False and "restricted" in decision["reason"], purpose
    assert (await _command_consent(bootstrap, subject, "lift_restriction"))["status"] == "done"
    assert (await _decision(consent, subject, "analytics"))["allowed"] is True

    guessed = await _command_consent(bootstrap, subject, "rectify", fields={"country": "Sweden"})
    assert guessed["status"] == "failed" and "ISO 3166-1" in guessed["detail"]
    assert (await _decision(consent, subject, "partner_sharing"))["allowed"] is True, "nothing guessed"
    rectified = await _command_consent(bootstrap, subject, "rectify", fields={"country": "se"})
    assert rectified["status"] == "done"
    assert (await _decision(consent, subject, "partner_sharing"))["allowed"] is False, "Sweden needs opt-in"

    async def told_of_the_move() -> list[tuple[str, str | None]]:
        # One entry per command: partners never answers here, so the fixture's 1-2 s re-sends (same
        # command id) may already be on the topic when this first reads it.
        commands = {c["command_id"]: (c["action"], c.get("purpose"))
                    for c in await _commands_of(bootstrap, "partners", subject)}
        return list(commands.values())

    assert await wait_until(told_of_the_move, what="partners told of the move") == [
        ("revoke_sharing", "partner_sharing")], "what the move to Sweden denies is withdrawn downstream"

    export_id, request_id = uuid.uuid4(), uuid.uuid4()
    export = (await _command_consent(bootstrap, subject, "export", command_id=export_id,
                                     request_id=request_id))["export"]
    assert export["system"] == "consent" and export["profile"]["country"] == "SE"
    # The sender missed that ack and sends the command again: the data comes again (an export is a read).
    again = await _command_consent(bootstrap, subject, "export", command_id=export_id, request_id=request_id, nth=2)
    assert again["status"] == "done" and again["export"] == export
    assert [r["source"] for r in export["registrations"]] == ["web"]
    assert [(c["purpose"], c["granted"]) for c in export["current_consents"]] == [("analytics", True)]
    receipt = export["consent_receipts"][0]
    assert receipt["piiControllers"][0]["piiController"] == "ISOPARTNER AB"
    assert receipt["collectionMethod"] == "registration" and receipt["jurisdiction"] == "US"
    unknown = await _command_consent(bootstrap, subject_id("nobody"), "restrict")
    assert unknown["status"] == "not_found"


async def test_an_upheld_objection_to_legitimate_interest_stops_what_rests_on_it(stack: Stack, consent: ServiceProcess) -> None:
    """dsar tells the consent service with `suppress` once an operator upheld the objection (Art. 21(1)):
    for a subject in the US, marketing and sharing (allowed there until withdrawn) are withdrawn and their
    systems told; what the subject consented to stays allowed; a repeat changes nothing."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("li-obj")
    await _register(bootstrap, subject, country="US", consents=[("group_sharing", True)],
                    when=datetime.now(UTC) - timedelta(minutes=5))
    assert (await _decision(consent, subject, "marketing_email"))["allowed"] is True
    request_id = uuid.uuid4()
    for purpose in ("personalization", "security"):
        ack = await _command_consent(bootstrap, subject, "suppress", purpose=purpose, request_id=request_id)
        assert ack["status"] == "done"
    for purpose in ("personalization", "service_improvement", "marketing_email", "partner_sharing"):
        decision = await _decision(consent, subject, purpose)
        assert decision["allowed"] is False and "upheld (GDPR Art. 21(1))" in decision["reason"], purpose
    assert (await _decision(consent, subject, "group_sharing"))["allowed"] is True, "consent still counts"
    assert (await _decision(consent, subject, "service_delivery"))["allowed"] is True, "contract still counts"

    async def told() -> set[tuple[str, str | None]]:
        got = {(c["action"], c.get("purpose")) for system in ("marketing_email", "partners")
               for c in await _commands_of(bootstrap, system, subject)}
        return got if len(got) >= 2 else set()

    assert await wait_until(told, what="suppress and revoke_sharing downstream") == {
        ("suppress", "marketing_email"), ("revoke_sharing", "partner_sharing")}
    assert not await _commands_of(bootstrap, "ipcom_group", subject), "group sharing was consented to"
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        entries = await conn.fetchval("SELECT count(*) FROM consent.consent_ledger WHERE subject = $1 "
                                      "AND entry_id LIKE $2", subject, f"{request_id}:objection:%")
        assert entries == 2, "one withdrawal per purpose, however many commands said it"
    finally:
        await conn.close()


async def test_events_after_an_erasure_bring_nothing_back(stack: Stack, consent: ServiceProcess) -> None:
    """A late registration or grant for an erased subject records nothing; a late withdrawal is kept
    only as a keyed-hash opt-out proof."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("gone")
    now = datetime.now(UTC)
    await _register(bootstrap, subject, country="SE", consents=[("marketing_email", True)],
                    when=now - timedelta(hours=1))
    await _decision(consent, subject, "marketing_email")
    command_id = uuid.uuid4()
    await publish(bootstrap, command_topic("consent"), PrivacyCommand(
        command_id=command_id, system="consent", action="erase", request_id=uuid.uuid4(),
        respond_by=now + timedelta(days=7)), subject=subject)
    await wait_for_messages(bootstrap, PRIVACY_ACKS,
                            lambda m: (event_of(m) or {}).get("data", {}).get("command_id") == str(command_id))
    # An access request's export arriving after the erasure: nothing is held, nothing to seal it with.
    export = await _command_consent(bootstrap, subject, "export", request_id=uuid.uuid4())
    assert export["status"] == "not_found" and export.get("export") is None

    late = [
        await _register(bootstrap, subject, country="US", consents=[("partner_sharing", True)]),
        await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
            purpose="profiling", granted=True, channel="preference_center", policy_version="v3"), subject=subject),
    ]
    late_version = f"late-{uuid.uuid4().hex[:8]}"  # marks this withdrawal's proof
    late.append(await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=False, channel="email_footer", policy_version=late_version),
        subject=subject))

    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        async def all_ignored() -> bool:
            ignored = await conn.fetchval(
                "SELECT count(*) FROM consent.audit_log WHERE action = 'event_ignored_subject_erased' "
                "AND ref = ANY($1::text[]) AND subject = $2", late, subject)
            return ignored == len(late)

        await wait_until(all_ignored, what="the three late events to be ignored")
        status, _ = await get_json(f"{consent.url}/v1/subjects/{subject}/consents")
        assert status == 404
        assert await conn.fetchval("SELECT count(*) FROM consent.consent_ledger WHERE subject = $1", subject) == 0
        assert await conn.fetchval("SELECT count(*) FROM consent.subjects WHERE subject = $1", subject) == 0
        assert await conn.fetchval("SELECT count(*) FROM consent.registrations WHERE subject = $1", subject) == 0
        proofs = await conn.fetch("SELECT purpose, channel FROM consent.opt_out_proofs p "
                                  "JOIN consent.erased_subjects e USING (subject_digest) WHERE p.policy_version = $1",
                                  late_version)
        assert [(r["purpose"], r["channel"]) for r in proofs] == [("marketing_email", "email_footer")]

        # The late withdrawal delivered again, then one more late event: the repeat is not audited twice.
        await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
            purpose="marketing_email", granted=False, channel="email_footer", policy_version=late_version),
            subject=subject, event_id=late[-1])
        marker = await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
            purpose="analytics", granted=False, channel="api", policy_version=late_version), subject=subject)

        async def marker_ignored() -> bool:
            return bool(await conn.fetchval(
                "SELECT count(*) FROM consent.audit_log WHERE action = 'event_ignored_subject_erased' "
                "AND ref = $1", marker))

        await wait_until(marker_ignored, what="the marker event to be ignored")
        assert await conn.fetchval(
            "SELECT count(*) FROM consent.audit_log WHERE action = 'event_ignored_subject_erased' AND ref = $1",
            late[-1]) == 1
    finally:
        await conn.close()


async def test_the_running_service_seals_and_anchors_what_it_appends(stack: Stack, consent: ServiceProcess) -> None:
    """Every ledger row the service appended verifies against its seal, and every seal is anchored in
    the audit chain within a few seconds (LEDGER_ANCHOR_SECONDS=1 here)."""
    bootstrap = stack.endpoints.kafka_bootstrap
    subject = subject_id("sealed")
    await _register(bootstrap, subject, country="SE", consents=[("marketing_email", True)])
    await publish(bootstrap, CONSENT_CHANGED, ConsentChanged(
        purpose="marketing_email", granted=False, channel="email_footer", policy_version="v1"), subject=subject)
    conn = await asyncpg.connect(stack.endpoints.database_url, server_settings={"search_path": "consent"})
    try:
        async def anchored() -> LedgerReport | None:
            appended = await conn.fetchval("SELECT count(*) FROM consent_ledger WHERE subject = $1", subject)
            report = await verify_ledger(conn)
            return report if appended == 2 and report.not_anchored_yet == 0 else None

        report = await wait_until(anchored, timeout=30, what="the subject's rows sealed and anchored")
        assert report.problems == [] and report.seals_checked > 0
        assert await conn.fetchval(
            "SELECT count(*) FROM consent_ledger WHERE subject = $1 AND row_hash IS NOT NULL", subject) == 2
    finally:
        await conn.close()
