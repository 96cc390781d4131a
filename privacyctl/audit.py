"""``privacyctl audit verify``: walk each service's hash-chained audit trail in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from privacyctl.errors import LOCAL_STACK_HINT, CtlError, redact_url

SERVICES = ("consent", "dsar", "notifier")


@dataclass
class ChainReport:
    service: str
    checked: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)
    #: The consent service's ledger seals (services/consent/seals.py): what was checked, in words.
    ledger: str | None = None


def _where(dsn: str) -> str:
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return redact_url(dsn)


async def verify(dsn: str, services: tuple[str, ...], timeout: float = 10.0) -> list[ChainReport]:
    import asyncpg

    from privacy_runtime.audit import verify_chain

    reports: list[ChainReport] = []
    for service in services:
        try:
            conn = await asyncpg.connect(dsn, timeout=timeout, server_settings={"search_path": service})
        except (TimeoutError, OSError) as exc:
            raise CtlError(
                f"cannot connect to PostgreSQL at {_where(dsn)} ({type(exc).__name__}: {exc}).\n"
                f"Set DATABASE_URL (postgresql://user:password@host:port/database); {LOCAL_STACK_HINT}."
            ) from None
        except asyncpg.InvalidPasswordError:
            raise CtlError(f"PostgreSQL refused the user or password in DATABASE_URL ({redact_url(dsn)}).") from None
        except asyncpg.InvalidCatalogNameError:
            raise CtlError(f"the database named in DATABASE_URL does not exist ({redact_url(dsn)}).") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise CtlError(f"cannot use DATABASE_URL ({redact_url(dsn)}): {exc}") from None
        try:
            table = await conn.fetchval("SELECT to_regclass('audit_log')::text")
            if table is None:
                raise CtlError(
                    f"schema {service!r} has no audit_log table: has the {service} service started against "
                    "this database (it applies its migrations at start)?"
                )
            checked, problems = await verify_chain(conn)
            report = ChainReport(service, checked, [(p.seq, p.problem) for p in problems])
            if service == "consent" and await conn.fetchval("SELECT to_regclass('ledger_seals')::text"):
                from services.consent.seals import verify as verify_ledger

                ledger = await verify_ledger(conn)
                report.problems.extend((p.seq, p.problem) for p in ledger.problems)
                report.ledger = (f"ledger: {ledger.rows_checked} rows in {ledger.seals_checked} sealed batches "
                                 f"checked ({ledger.not_anchored_yet} not anchored yet"
                                 + (f", {ledger.unsealed_rows} rows from before sealing" if ledger.unsealed_rows
                                    else "") + ")")
            reports.append(report)
        finally:
            await conn.close()
    return reports
