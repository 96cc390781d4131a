"""Property-based fuzzing of the consent HTTP API: no input yields a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.stack import Stack
from tests.helpers import running_client

pytestmark = pytest.mark.stack

text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=300)


@pytest.fixture(scope="module")
def consent_client(stack: Stack) -> Iterator[httpx.Client]:
    with running_client("consent", stack.env()) as client:
        yield client


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=text, purpose=text, system=st.none() | text)
def test_decisions_never_fail_with_5xx(consent_client: httpx.Client, subject: str, purpose: str,
                                       system: str | None) -> None:
    params = {"subject": subject, "purpose": purpose}
    if system is not None:
        params["system"] = system
    response = consent_client.get("/v1/decisions", params=params)
    assert response.status_code < 500, response.text
    assert "error" in response.json() or "allowed" in response.json()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="/?#%\\"), min_size=1, max_size=400),
       method=st.sampled_from(["GET", "POST"]))
def test_unsubscribe_refuses_anything_unsigned(consent_client: httpx.Client, token: str, method: str) -> None:
    response = consent_client.request(method, f"/v1/unsubscribe/{token}")
    assert response.status_code in (400, 404, 405), response.status_code


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="/?#%\\"), min_size=1, max_size=200))
def test_subject_consents_never_fail_with_5xx(consent_client: httpx.Client, subject: str) -> None:
    response = consent_client.get(f"/v1/subjects/{subject}/consents")
    assert response.status_code < 500
