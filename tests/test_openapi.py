"""The OpenAPI document matches the running services: every documented operation is routed, answers
with a documented status, and its JSON body validates against the documented schema; every route the
services register is documented."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from devstack.stack import Stack
from privacy_runtime.tokens import UNSUBSCRIBE, TokenSigner
from schemas.events import DsarDetails, DsarRequested, ErasureRequested, UserRegistered
from schemas.topics import DSAR_REQUESTED, ERASURE_REQUESTED, NOTIFICATION_REQUESTED, USER_REGISTERED
from tests.helpers import (
    ROOT,
    TEST_ADMIN_TOKEN,
    TEST_MASTER_KEY,
    ServiceProcess,
    event_of,
    get_json,
    opened_notification,
    publish,
    registered_paths,
    subject_id,
    wait_for_messages,
    wait_until,
)

pytestmark = pytest.mark.stack

DOC = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text())
STREAM_SERVICES = ("consent", "dsar", "notifier")


def test_every_registered_route_is_documented() -> None:
    registered = set().union(*(registered_paths(service) for service in STREAM_SERVICES))
    assert len(registered) > 10, registered  # the services were built with their routes
    # The link pages' stylesheet is a static asset, not an operation of the API.
    registered = {path for path in registered if not path.endswith("/static/pages.css")}
    assert registered == set(DOC["paths"])


def _validate(schema: dict[str, Any], body: Any) -> None:
    jsonschema.validate(body, {**schema, "components": DOC["components"]},
                        cls=jsonschema.Draft202012Validator)


def _resolve(response_doc: dict[str, Any]) -> dict[str, Any]:
    ref = response_doc.get("$ref")
    if ref:
        return DOC["components"]["responses"][ref.rsplit("/", 1)[1]]
    return response_doc


async def test_running_services_answer_as_documented(stack: Stack, system: dict[str, ServiceProcess]) -> None:
    subject = subject_id("oas")
    request_id = uuid.uuid4()
    await publish(stack.endpoints.kafka_bootstrap, ERASURE_REQUESTED, ErasureRequested(
        request_id=request_id, ground="no_longer_necessary", identity_verified=False, requested_via="web_form"),
        subject=subject)

    async def case_exists() -> bool:
        status, _ = await get_json(f"{system['dsar'].url}/v1/requests/{request_id}")
        return status == 200

    await wait_until(case_exists, what="the case to open")
    values = {"request_id": str(request_id), "subject_id": "nobody-known", "token": "not-a-valid-token"}
    auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    checked = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for path, operations in DOC["paths"].items():
            for method, op in operations.items():
                if method in ("parameters", "servers"):
                    continue
                services = ["consent", "dsar", "notifier"] if op["x-service"] == "all" else [op["x-service"]]
                concrete = path.format(**{k: v for k, v in values.items() if "{" + k + "}" in path})
                params = {"subject": "nobody-known", "purpose": "analytics"} if path == "/v1/decisions" else None
                body = None
                if path.endswith("/verify"):
                    body = {"code": "000000"}
                elif path.endswith("/reject"):
                    body = {"reason": "Art. 12(5): manifestly unfounded (documentation check)"}
                elif path.endswith("/extend"):
                    body = {"months": 1, "reason": "many systems to search"}
                for name in services:
                    response = await client.request(method.upper(), system[name].url + concrete, params=params,
                                                    json=body, headers=auth)
                    documented = op["responses"]
                    assert str(response.status_code) in documented, (method, path, response.status_code, response.text)
                    is_json = response.headers.get("content-type", "").startswith("application/json")
                    if response.status_code == 404:
                        # Routed: our JSON error, or our page (a person's link: it carries the pages' CSP).
                        ours = is_json or "Content-Security-Policy" in response.headers
                        assert ours, f"{method} {path} is not routed on {name}"
                    content = _resolve(documented[str(response.status_code)]).get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    if schema and is_json:
                        _validate(schema, response.json())
                    checked += 1
    assert checked >= len(DOC["paths"])


async def test_successful_answers_match_the_documented_schemas(stack: Stack, system: dict[str, ServiceProcess]) -> None:
    """The 2xx side: a registered subject's decision and consents, a request verified with the code from
    its email, operator reads, extend, reject, approve, the notifier's queue, and the unsubscribe pages."""
    bootstrap = stack.endpoints.kafka_bootstrap
    consent, dsar, notifier = system["consent"].url, system["dsar"].url, system["notifier"].url
    subject = subject_id("oas-ok")
    await publish(bootstrap, USER_REGISTERED, UserRegistered(email=f"{subject}@example.com", country="SE"),
                  subject=subject)
    request_id, objection, refused = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for rid in (request_id, refused):
        await publish(bootstrap, ERASURE_REQUESTED, ErasureRequested(
            request_id=rid, ground="no_longer_necessary", identity_verified=False, requested_via="web_form"),
            subject=subject)
    await publish(bootstrap, DSAR_REQUESTED, DsarRequested(
        request_id=objection, right="objection", identity_verified=True, requested_via="web_form",
        details=DsarDetails(processing="legitimate_interest")), subject=subject)

    def code_email(m: Any) -> bool:
        return (event_of(m) or {}).get("data", {}).get("notification_id") == f"dsar:{request_id}:code:1"

    code = opened_notification((event_of((await wait_for_messages(bootstrap, NOTIFICATION_REQUESTED, code_email))[0])
                                or {})["data"])["params"]["code"]

    async def in_review() -> bool:
        status, body = await get_json(f"{dsar}/v1/admin/requests/{objection}",
                                      headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
        return status == 200 and body.get("manual_review") is True

    await wait_until(in_review, what="the legitimate-interest objection to wait for review")
    unsubscribe = TokenSigner(base64.b64decode(TEST_MASTER_KEY), UNSUBSCRIBE).sign(
        {"s": subject, "p": "marketing_email"})
    auth = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("GET", consent, "/v1/decisions", {"params": {"subject": subject, "purpose": "analytics"}}),
        ("GET", consent, "/v1/subjects/{subject_id}/consents", {}),
        ("POST", dsar, "/v1/requests/{request_id}/verify", {"json": {"code": code}}),
        ("GET", dsar, "/v1/requests/{request_id}", {}),
        ("GET", dsar, "/v1/admin/requests", {"headers": auth}),
        ("GET", dsar, "/v1/admin/requests/{request_id}", {"headers": auth}),
        ("POST", dsar, "/v1/admin/requests/{request_id}/extend",
         {"headers": auth, "json": {"months": 1, "reason": "many systems to search"}}),
        ("POST", dsar, "/v1/admin/requests/{refused}/reject",
         {"headers": auth, "json": {"reason": "Art. 17(3)(e): needed for a legal claim (documentation check)"}}),
        ("POST", dsar, "/v1/admin/requests/{objection}/approve", {"headers": auth}),
        ("GET", notifier, "/v1/admin/emails", {"headers": auth}),
        ("GET", dsar, "/v1/internal/subjects/{subject_id}/requests", {"headers": auth}),
        ("POST", notifier, "/v1/internal/subjects/lookup", {"headers": auth, "json": {"email": f"{subject}@example.com"}}),
        ("POST", dsar, "/v1/internal/subjects/erased", {"headers": auth, "json": {"subjects": [subject]}}),
        ("GET", consent, "/v1/unsubscribe/{token}", {}),
        ("POST", consent, "/v1/unsubscribe/{token}", {"content": b"List-Unsubscribe=One-Click"}),
    ]
    values = {"subject_id": subject, "request_id": str(request_id), "objection": str(objection),
              "refused": str(refused), "token": unsubscribe}
    async with httpx.AsyncClient(timeout=10) as client:
        for method, base, path, options in calls:
            response = await client.request(method, base + path.format(**values), **options)
            assert 200 <= response.status_code < 300, (method, path, response.status_code, response.text)
            documented_path = path.replace("{objection}", "{request_id}").replace("{refused}", "{request_id}")
            documented = DOC["paths"][documented_path][method.lower()]["responses"]
            content = _resolve(documented[str(response.status_code)]).get("content", {})
            media = response.headers.get("content-type", "").split(";")[0]
            assert media in content, (method, path, media)
            schema = content[media].get("schema")
            if schema:
                _validate(schema, response.json())
