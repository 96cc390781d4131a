"""privacyctl: publish contract events, look at consents, act on cases, replay dead letters, verify audits.

Settings come from the environment, as for the services: KAFKA_BOOTSTRAP_SERVERS (+ KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_*, KAFKA_SSL_CAFILE), DATABASE_URL, ADMIN_TOKEN, plus CONSENT_URL and DSAR_URL for the HTTP APIs.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from privacyctl import events
from privacyctl.config import CtlSettings
from privacyctl.errors import INVALID, LOCAL_STACK_HINT, CtlError
from privacyctl.http import ServiceClient
from schemas import topics

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="privacyctl",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cases_app = typer.Typer(
    help="List data-subject request cases and act on them (dsar service, DSAR_URL).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
dlq_app = typer.Typer(help="Dead-letter topics (<topic>.dlq).", no_args_is_help=True, rich_markup_mode=None)
audit_app = typer.Typer(
    help="The hash-chained audit trails in PostgreSQL (DATABASE_URL).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(cases_app, name="cases")
app.add_typer(dlq_app, name="dlq")
app.add_typer(audit_app, name="audit")


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Print a CtlError as `privacyctl: <message>` on stderr and exit with its code (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CtlError as exc:
            typer.echo(f"privacyctl: {exc.message}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("privacyctl: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def settings() -> CtlSettings:
    try:
        return CtlSettings()
    except ValueError as exc:
        raise CtlError(f"invalid environment: {exc}", INVALID) from None


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False))


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def yes_no(value: Any) -> str:
    return {True: "yes", False: "no"}.get(value, "-" if value is None else str(value))


# --- publish -----------------------------------------------------------------------------------


@app.command()
@friendly
def publish(
    topic: Annotated[
        str, typer.Argument(metavar="TOPIC", help="Contract topic, e.g. consent-changed or privacy-commands.billing.")
    ],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", metavar="FILE", help="JSON file with the event's data (or a whole CloudEvent); - for stdin."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", "-s", metavar="KEY=VALUE", help="Field of data: key=value (JSON if it fits), key:=json, a.b=value."
        ),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", metavar="SUBJECT", help="The subject id (Kafka key).")
    ] = None,
    event_id: Annotated[str | None, typer.Option("--id", metavar="ID", help="Event id (default: a new uuid4).")] = None,
    source: Annotated[
        str | None, typer.Option(metavar="URI", help=f"CloudEvents source (default {events.SOURCE}).")
    ] = None,
    time: Annotated[datetime | None, typer.Option(metavar="TIME", help="Event time, RFC 3339 (default: now).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the event; send nothing.")] = False,
) -> None:
    """Validate an event against the contract models, publish it, and print its id.

    \b
    Examples:
      privacyctl publish consent-changed --subject usr_1 \\
        --set purpose=marketing_email --set granted=false \\
        --set channel=support --set policy_version=2021-10-30
      privacyctl example dsar-requested > req.json
      privacyctl publish dsar-requested --file req.json --subject usr_1
    """
    if time is not None and time.tzinfo is None:
        raise CtlError("--time needs an offset, e.g. 2024-05-01T10:00:00+02:00", INVALID)
    file_data = events.read_json_file(file) if file is not None else None
    event, key = events.build_event(
        topic,
        file_data=file_data,
        assignments=set_ or [],
        subject=subject,
        event_id=event_id,
        source=source,
        time=time,
    )
    value = event.model_dump_json().encode()
    if dry_run:
        typer.echo(json.dumps(json.loads(value), indent=2, ensure_ascii=False))
        typer.echo(f"valid; not sent (key {key!r})", err=True)
        return
    from privacyctl.kafka import publish as send

    where = asyncio.run(send(settings(), topic, key, value))
    typer.echo(event.id)
    typer.echo(f"published to {where.topic}[{where.partition}]@{where.offset} with key {key!r}", err=True)


@app.command()
@friendly
def example(topic: Annotated[str, typer.Argument(metavar="TOPIC", help="Contract topic.")]) -> None:
    """Print the contract's example data for a topic (a starting point for publish --file)."""
    echo_json(events.example_data(topic))


@app.command("topics")
@friendly
def list_topics() -> None:
    """List the contract topics (those publish accepts, then the dead-letter topics)."""
    for topic in (*topics.DATA_TOPICS, *topics.DLQ_TOPICS):
        typer.echo(topic)


# --- consent -----------------------------------------------------------------------------------


def consent_client(cfg: CtlSettings) -> ServiceClient:
    return ServiceClient("consent", cfg.consent_url, "CONSENT_URL", timeout=cfg.privacyctl_timeout)


@app.command()
@friendly
def consents(
    subject: Annotated[str, typer.Argument(metavar="SUBJECT", help="The subject id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Show a subject's consents and what each purpose is allowed for (consent service, CONSENT_URL)."""
    cfg = settings()
    answer = consent_client(cfg).request("GET", f"/v1/subjects/{_path(subject)}/consents")
    if as_json or not isinstance(answer, dict) or not isinstance(answer.get("purposes"), list):
        echo_json(answer)
        return
    typer.echo(
        f"subject {answer.get('subject', subject)}: jurisdiction {answer.get('jurisdiction') or 'unknown'}, "
        f"restricted {yes_no(answer.get('restricted'))}, objections {', '.join(answer.get('objections') or []) or '-'}"
    )
    rows = []
    for item in answer["purposes"]:
        consent = item.get("consent") or {}
        given = (
            "-"
            if not consent
            else f"{'granted' if consent.get('granted') else 'withdrawn'} ({consent.get('channel', '?')})"
        )
        rows.append(
            [
                str(item.get("purpose")),
                yes_no(item.get("allowed")),
                str(item.get("basis") or "-"),
                given,
                str(item.get("reason") or ""),
            ]
        )
    table(rows, ["PURPOSE", "ALLOWED", "BASIS", "CONSENT", "REASON"])


@app.command()
@friendly
def decision(
    subject: Annotated[str, typer.Argument(metavar="SUBJECT", help="The subject id.")],
    purpose: Annotated[str, typer.Argument(metavar="PURPOSE", help="A purpose, e.g. marketing_email.")],
    system: Annotated[
        str | None, typer.Option(metavar="SYSTEM", help="Ask for one downstream system (its data-map purposes).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Ask whether a purpose is allowed for a subject (consent service, CONSENT_URL)."""
    cfg = settings()
    params = {"subject": subject, "purpose": purpose}
    if system:
        params["system"] = system
    answer = consent_client(cfg).request("GET", "/v1/decisions", params=params)
    if as_json or not isinstance(answer, dict) or "allowed" not in answer:
        echo_json(answer)
        return
    verdict = "allowed" if answer["allowed"] else "denied"
    target = f" on {system}" if system else ""
    typer.echo(f"{purpose}{target} for {subject}: {verdict}")
    for name in ("basis", "reason"):
        if answer.get(name):
            typer.echo(f"  {name}: {answer[name]}")


# --- cases -------------------------------------------------------------------------------------


def dsar_admin(cfg: CtlSettings) -> ServiceClient:
    token = cfg.admin_token.get_secret_value()
    if not token:
        raise CtlError(
            "ADMIN_TOKEN is not set: export the dsar service's operator token as ADMIN_TOKEN "
            f"({LOCAL_STACK_HINT}; the token is in var/secrets.env).",
            INVALID,
        )
    return ServiceClient("dsar", cfg.dsar_url, "DSAR_URL", timeout=cfg.privacyctl_timeout, token=token)


def _path(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _cases(answer: Any) -> list[dict[str, Any]] | None:
    if isinstance(answer, list):
        items = answer
    elif isinstance(answer, dict):
        found: list[Any] | None = next(
            (answer[k] for k in ("requests", "cases", "items") if isinstance(answer.get(k), list)), None
        )
        if found is None:
            return None
        items = found
    else:
        return None
    return [i for i in items if isinstance(i, dict)]


CASE_COLUMNS = ("request_id", "right", "status", "due_at", "extended")


@cases_app.command("list")
@friendly
def cases_list(
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only cases in this status, e.g. in_progress.")
    ] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only cases past their due date.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """List cases (GET /v1/admin/requests)."""
    cfg = settings()
    params: dict[str, str] = {}
    if status:
        params["status"] = status
    if overdue:
        params["overdue"] = "true"
    answer = dsar_admin(cfg).request("GET", "/v1/admin/requests", params=params)
    items = _cases(answer)
    if as_json or items is None:
        echo_json(answer)
        return
    if not items:
        typer.echo("no cases")
        return
    table(
        [[yes_no(i.get(c)) if c == "extended" else str(i.get(c) or "-") for c in CASE_COLUMNS] for i in items],
        [c.upper() for c in CASE_COLUMNS],
    )


STEP_COLUMNS = ("system", "action", "purpose", "attempt", "outcome", "command_id")


@cases_app.command("show")
@friendly
def cases_show(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", help="The case's request_id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Show one case: its deadline, what was decided, and each system's command and answer."""
    answer = dsar_admin(settings()).request("GET", f"/v1/admin/requests/{_path(request_id)}")
    if as_json or not isinstance(answer, dict):
        echo_json(answer)
        return
    typer.echo(f"case {answer.get('request_id')}: {answer.get('right')}, {answer.get('status')}"
               + (" (overdue)" if answer.get("overdue") else ""))
    typer.echo(f"  subject {answer.get('subject')}, received {answer.get('received_at')}, due {answer.get('due_at')}"
               + (f" (extended by {answer.get('extension_months')} month(s): {answer.get('extension_reason')})"
                  if answer.get("extended") else ""))
    for label, key in (("reason", "reason"), ("manual review", "review_reason"), ("closed", "closed_at")):
        if answer.get(key):
            typer.echo(f"  {label}: {answer[key]}")
    for kept in answer.get("retained") or []:
        if isinstance(kept, dict):
            typer.echo(f"  retained by {kept.get('system')}: {kept.get('basis')}")
    steps = [s for s in answer.get("steps") or [] if isinstance(s, dict)]
    if not steps:
        typer.echo("  no commands sent yet")
        return
    waiting = sum(1 for s in steps if not s.get("outcome"))
    typer.echo(f"  commands: {len(steps)}, answered {len(steps) - waiting}, waiting {waiting}")
    table([[str(s.get(c) or ("waiting" if c == "outcome" else "-")) for c in STEP_COLUMNS] for s in steps],
          [c.upper() for c in STEP_COLUMNS])


def _case_action(request_id: str, action: str, body: dict[str, Any] | None, as_json: bool) -> None:
    cfg = settings()
    answer = dsar_admin(cfg).request("POST", f"/v1/admin/requests/{_path(request_id)}/{action}", body=body)
    if as_json or not isinstance(answer, dict):
        echo_json(answer)
        return
    status = answer.get("status")
    due = answer.get("due_at")
    typer.echo(
        f"{request_id}: {action} accepted" + (f"; status {status}" if status else "") + (f"; due {due}" if due else "")
    )


@cases_app.command("approve")
@friendly
def cases_approve(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", help="The case's request_id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Approve a case waiting for manual review."""
    _case_action(request_id, "approve", None, as_json)


@cases_app.command("reject")
@friendly
def cases_reject(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", help="The case's request_id.")],
    reason: Annotated[
        str,
        typer.Option(metavar="TEXT", help="The legal reason, sent to the subject with the right to complain to IMY."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Reject a case, naming the legal reason."""
    if not reason.strip():
        raise CtlError("--reason must not be empty: the subject is told why (GDPR Art. 12(4))", INVALID)
    _case_action(request_id, "reject", {"reason": reason}, as_json)


class Months(StrEnum):
    ONE = "1"
    TWO = "2"


@cases_app.command("extend")
@friendly
def cases_extend(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", help="The case's request_id.")],
    months: Annotated[Months, typer.Option(help="Extension in months: 1 or 2 (GDPR Art. 12(3)).")],
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Why, sent to the subject within the first month.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Extend a case's deadline by one or two months, with a reason."""
    if not reason.strip():
        raise CtlError("--reason must not be empty: the subject is told why the answer takes longer", INVALID)
    _case_action(request_id, "extend", {"months": int(months.value), "reason": reason}, as_json)


@cases_app.command("lift")
@friendly
def cases_lift(
    request_id: Annotated[str, typer.Argument(metavar="REQUEST_ID", help="A completed restriction case.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the service's JSON answer.")] = False,
) -> None:
    """Lift a restriction (GDPR Art. 18(3)): every system is told, and the subject first."""
    _case_action(request_id, "lift", None, as_json)


# --- dead letters ------------------------------------------------------------------------------


@dlq_app.command("replay")
@friendly
def dlq_replay(
    topic: Annotated[
        str, typer.Argument(metavar="TOPIC", help="The original topic (its <topic>.dlq is read), e.g. consent-changed.")
    ],
    limit: Annotated[int | None, typer.Option(min=1, metavar="N", help="Replay at most this many messages.")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; send and commit nothing.")
    ] = False,
) -> None:
    """Re-publish dead letters to their topic after a fix (original key, value, headers; x-* error headers dropped).

    Reads <topic>.dlq with the consumer group privacyctl-replay.<topic>, so a second run continues where
    the last one stopped. Messages that fail again are dead-lettered again.
    """
    from privacyctl.kafka import Replayed, replay, replay_source

    source = replay_source(topic)

    def show(message: Replayed) -> None:
        key = message.key.decode("utf-8", "replace") if message.key is not None else "-"
        verb = "would replay" if dry_run else "replayed"
        typer.echo(f"{verb} {source}.dlq[{message.partition}]@{message.offset} key={key} error={message.error[:200]}")

    count = asyncio.run(replay(settings(), source, limit=limit, dry_run=dry_run, on_message=show))
    typer.echo(f"{count} message(s) {'to replay' if dry_run else 'replayed'} from {source}.dlq to {source}", err=True)


# --- audit -------------------------------------------------------------------------------------


class AuditService(StrEnum):
    CONSENT = "consent"
    DSAR = "dsar"
    NOTIFIER = "notifier"
    ALL = "all"


@audit_app.command("verify")
@friendly
def audit_verify(
    service: Annotated[
        AuditService, typer.Option(help="Whose audit trail (its PostgreSQL schema).")
    ] = AuditService.ALL,
    published: Annotated[bool, typer.Option(
        "--published/--database-only",
        help="Also compare the chain with the entries published on privacy-audit (KAFKA_BOOTSTRAP_SERVERS): "
             "catches newest rows removed, or a chain rewritten and hashed again.",
    )] = True,
) -> None:
    """Check the audit hash chain (and the consent ledger's seals); exit 1 and name each bad entry."""
    from privacyctl.audit import SERVICES, verify

    cfg = settings()
    chosen = SERVICES if service is AuditService.ALL else (service.value,)
    reports = asyncio.run(verify(cfg.database_url, chosen, timeout=cfg.privacyctl_timeout,
                                 kafka=cfg if published else None))
    bad = 0
    for report in reports:
        if report.problems:
            bad += 1
            typer.echo(f"{report.service}: {report.checked} entries checked, {len(report.problems)} problem(s):")
            for seq, problem in report.problems:
                typer.echo(f"  seq {seq}: {problem}" if seq else f"  {problem}")
        else:
            typer.echo(f"{report.service}: {report.checked} entries checked, chain intact")
        if report.ledger:
            typer.echo(f"  {report.ledger}")
        if report.published:
            typer.echo(f"  {report.published}")
    if bad:
        raise typer.Exit(1)
