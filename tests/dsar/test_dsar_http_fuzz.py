"""Property-based fuzzing of the dsar HTTP API: no input yields a 5xx, and nothing an outsider sends
gets past the token checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.stack import Stack
from tests.helpers import TEST_ADMIN_TOKEN, running_client

pytestmark = pytest.mark.stack

#: One path segment ("." and ".." are resolved by the client before anything is sent).
path_segment = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="/?#%\\"),
                       min_size=1, max_size=300).filter(lambda s: s not in (".", ".."))
#: Any JSON value, nested a little: what a client might put in a body.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=200),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)
bodies = json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=500)
request_ids = st.uuids().map(str) | path_segment
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def dsar_client(stack: Stack) -> Iterator[httpx.Client]:
    with running_client("dsar", stack.env()) as client:
        yield client


def _answered_clearly(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        if response.headers.get("content-type", "").startswith("application/json"):
            assert response.json()["error"], response.text
        else:  # a path no route matches (e.g. a "{" in an id): the web server's own "404: Not Found"
            assert response.status_code == 404 and response.text.strip(), response.text


@FUZZ
@given(request_id=request_ids, body=bodies)
def test_verify_never_fails_with_5xx(dsar_client: httpx.Client, request_id: str, body: bytes) -> None:
    response = dsar_client.post(f"/v1/requests/{request_id}/verify", content=body,
                                headers={"Content-Type": "application/json"})
    _answered_clearly(response)
    assert response.status_code != 200, "no case exists here: nothing can be verified"


@FUZZ
@given(request_id=request_ids)
def test_request_status_never_fails_with_5xx(dsar_client: httpx.Client, request_id: str) -> None:
    _answered_clearly(dsar_client.get(f"/v1/requests/{request_id}"))


@FUZZ
@given(token=path_segment)
def test_export_links_refuse_anything_not_issued(dsar_client: httpx.Client, token: str) -> None:
    response = dsar_client.get(f"/v1/exports/{token}")
    assert response.status_code in (404, 410), response.status_code


@FUZZ
@given(action=st.sampled_from(["approve", "reject", "extend", "lift"]), body=bodies,
       # Stripped: an HTTP client cannot send a header value that starts or ends with whitespace at all.
       authorization=st.none() | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                         max_size=80).map(str.strip))
def test_operator_actions_need_the_token(dsar_client: httpx.Client, action: str, body: bytes,
                                         authorization: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = dsar_client.post(f"/v1/admin/requests/{uuid.uuid4()}/{action}", content=body, headers=headers)
    _answered_clearly(response)
    assert response.status_code == 401, response.status_code


@FUZZ
@given(action=st.sampled_from(["approve", "reject", "extend", "lift"]), body=bodies, request_id=request_ids)
def test_operator_actions_with_the_token_never_fail_with_5xx(dsar_client: httpx.Client, action: str, body: bytes,
                                                             request_id: str) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    response = dsar_client.post(f"/v1/admin/requests/{request_id}/{action}", content=body, headers=headers)
    _answered_clearly(response)
    assert response.status_code != 200, "no case exists here: nothing can change"


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["status", "overdue", "right", "limit", "offset", "x"]),
                              path_segment, max_size=4))
def test_case_listing_never_fails_with_5xx(dsar_client: httpx.Client, params: dict[str, str]) -> None:
    response = dsar_client.get("/v1/admin/requests", params=params,
                               headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"})
    _answered_clearly(response)
