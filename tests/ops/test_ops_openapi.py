"""The OpenAPI document says what the operator endpoints refuse (tests/test_openapi.py checks it against
the running services; this checks, without servers, what a reason may be)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from schemas.fields import Detail

ROOT = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text())
ADMIN = "/v1/admin/requests/{request_id}"


def _reason_valid(text: str) -> bool:
    try:
        jsonschema.validate(text, DOC["components"]["schemas"]["Reason"], cls=jsonschema.Draft202012Validator)
    except jsonschema.ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("Manifestly unfounded (GDPR Art. 12(5))", True),
        ("two lines:\nfirst\tand second", True),
        ("åäö – Bokföringslagen 7 kap. 2 §", True),
        ("x" * 2000, True),
        ("x" * 2001, False),
        ("", False),
        ("carriage\rreturn", False),
        ("nul\x00", False),
        ("escape\x1b[31m", False),
        ("delete\x7f", False),
    ],
)
def test_the_documented_reason_is_what_a_status_event_can_carry(text: str, valid: bool) -> None:
    assert _reason_valid(text) is valid
    if valid:  # what the document admits, the event's `reason` (a Detail) takes
        TypeAdapter(Detail).validate_python(text)


def test_a_lone_surrogate_is_named_as_refused() -> None:
    # No pattern can express it; the description does, and the event's type refuses it.
    assert "lone surrogate" in DOC["components"]["schemas"]["Reason"]["description"]
    with pytest.raises(ValidationError):
        TypeAdapter(Detail).validate_python("unfounded \ud800")


@pytest.mark.parametrize("action", ["reject", "extend"])
def test_reject_and_extend_document_their_400(action: str) -> None:
    op: dict[str, Any] = DOC["paths"][f"{ADMIN}/{action}"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["reason"] == {"$ref": "#/components/schemas/Reason"}
    assert op["responses"]["400"] == {"$ref": "#/components/responses/BadReason"}
    described = DOC["components"]["responses"]["BadReason"]["description"]
    assert all(word in described for word in ("control characters", "DEL", "lone surrogates"))


def test_approve_documents_the_completed_case_flagged_for_review() -> None:
    op = DOC["paths"][f"{ADMIN}/approve"]["post"]
    assert "lift_restriction" in op["description"] and "`completed`" in op["description"]
