"""Two privacy center replicas on one database share one rate limit: the email form per address and
per client, and code entry per client, count every attempt whichever replica takes it. A known address
and an unknown one are answered alike all the way to the limit."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import asyncpg
import httpx
import pytest

from devstack.stack import Stack
from tests.helpers import ServiceProcess
from tests.privacy_center.conftest import center_env
from tests.privacy_center.support import register, sign_in_links

if TYPE_CHECKING:
    from tests.privacy_center.conftest import CenterSystem

pytestmark = [pytest.mark.stack]

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
LIMITS = {"EMAIL_LIMIT_PER_ADDRESS": "2", "EMAIL_LIMIT_PER_CLIENT": "4", "CODE_LIMIT_PER_CLIENT": "3",
          "TRUST_FORWARDED_FOR": "true"}


@pytest.fixture(scope="module")
async def replicas(stack: Stack, center_system: CenterSystem) -> AsyncIterator[list[str]]:
    started = []
    for _ in range(2):
        replica = ServiceProcess("privacy_center", stack.env())
        replica.extra_env = {**center_env(center_system, replica), **LIMITS}
        started.append(replica.start())
    try:
        for replica in started:
            await replica.wait_ready(timeout=90)
        yield [replica.url for replica in started]
    finally:
        for replica in started:
            replica.stop()


class Person:
    """One browser at one client address, with a form token for each replica."""

    def __init__(self, client_address: str):
        self.headers = {"X-Forwarded-For": client_address}
        self.clients: list[tuple[httpx.AsyncClient, str]] = []

    async def open(self, urls: list[str]) -> Person:
        for url in urls:
            client = httpx.AsyncClient(base_url=url, headers=self.headers, timeout=30)
            token = CSRF.search((await client.get("/")).text)
            assert token
            self.clients.append((client, token.group(1)))
        return self

    async def post(self, replica: int, path: str, **fields: str) -> httpx.Response:
        client, token = self.clients[replica]
        return await client.post(path, data={"csrf_token": token, **fields})

    async def close(self) -> None:
        for client, _ in self.clients:
            await client.aclose()


async def test_the_email_form_limit_per_address_is_shared_and_the_same_for_unknown_addresses(
        stack: Stack, center_system: CenterSystem, replicas: list[str]) -> None:
    subject, known = await register(stack, center_system.consent.url, locale="sv", prefix="pc-shared")
    unknown = f"nobody-{uuid.uuid4().hex[:8]}@example.org"
    answers: dict[str, list[tuple[int, str | None]]] = {}
    for n, address in enumerate((known, unknown)):
        person = await Person(f"198.51.100.{10 + n}").open(replicas)
        try:
            seen = []
            for replica in (0, 1, 0, 1):
                answer = await person.post(replica, "/", email=address)
                seen.append((answer.status_code, answer.headers.get("location")))
            answers[address] = seen
        finally:
            await person.close()
    assert answers[known] == [(303, "/sent"), (303, "/sent"), (429, None), (429, None)], \
        "two attempts per address in all, not two per replica"
    assert answers[unknown] == answers[known], "an unknown address is answered exactly as a known one"
    await sign_in_links(stack, known, count=2)
    conn = await asyncpg.connect(stack.endpoints.database_url)
    try:
        links = await conn.fetchval("SELECT count(*) FROM privacy_center.sign_in_links WHERE subject = $1", subject)
    finally:
        await conn.close()
    assert links == 2, "the refused attempts sent nothing"


async def test_the_limits_per_client_are_shared(replicas: list[str]) -> None:
    person = await Person("198.51.100.20").open(replicas)
    try:
        emails = [(await person.post(n % 2, "/", email=f"someone-{uuid.uuid4().hex[:8]}@example.org")).status_code
                  for n in range(5)]
        assert emails == [303, 303, 303, 303, 429], "four addresses per client in all"
    finally:
        await person.close()

    person = await Person("198.51.100.21").open(replicas)
    try:
        request_id = uuid.uuid4()
        codes = [(await person.post(n % 2, f"/verify/{request_id}", code="12ab")).status_code for n in range(4)]
        assert codes == [400, 400, 400, 429], "three codes per client in all, whichever replica takes them"
    finally:
        await person.close()
