"""The OpenAPI document matches the running services: every documented operation is routed, answers
with a documented status, and its JSON body validates against the documented schema; every route the
services register is documented."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from schemas.events import ErasureRequested
from schemas.topics import ERASURE_REQUESTED
from tests.helpers import ROOT, TEST_ADMIN_TOKEN, get_json, publish, subject_id, wait_until

pytestmark = pytest.mark.stack

DOC = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text())
ROUTE = re.compile(r'@route\(app, runtime, "([^"]+)"')


def _registered_paths() -> set[str]:
    paths = {"/metrics", "/healthz", "/readyz"}
    for views in Path(ROOT / "services").glob("*/views.py"):
        paths |= {re.sub(r"\{subject_id\}", "{subject_id}", p) for p in ROUTE.findall(views.read_text())}
    return paths


def test_every_registered_route_is_documented() -> None:
    assert _registered_paths() == set(DOC["paths"])


def _validate(schema: dict[str, Any], body: Any) -> None:
    jsonschema.validate(body, {**schema, "components": DOC["components"]},
                        cls=jsonschema.Draft202012Validator)


def _resolve(response_doc: dict[str, Any]) -> dict[str, Any]:
    ref = response_doc.get("$ref")
    if ref:
        return DOC["components"]["responses"][ref.rsplit("/", 1)[1]]
    return response_doc


async def test_running_services_answer_as_documented(stack, system) -> None:  # type: ignore[no-untyped-def]
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
                if method == "parameters":
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
                        assert is_json, f"{method} {path} is not routed on {name}"
                    content = _resolve(documented[str(response.status_code)]).get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    if schema and is_json:
                        _validate(schema, response.json())
                    checked += 1
    assert checked >= len(DOC["paths"])
