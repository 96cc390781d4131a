"""`schemas/openapi.yaml` is valid OpenAPI 3.1 by openapi-spec-validator, and each path names the one
service that serves it (or is served by all). The validator is also shown to refuse broken copies,
among them the very mistake it once caught: a flow mapping whose unquoted description has a comma."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "schemas" / "openapi.yaml").read_text()
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _validate(text: str) -> None:
    validate(yaml.safe_load(text))


def test_the_document_is_valid_openapi_3_1() -> None:
    assert yaml.safe_load(TEXT)["openapi"] == "3.1.0"
    _validate(TEXT)


@pytest.mark.parametrize(("name", "broken"), [
    ("an unquoted description with a comma in a flow mapping",
     lambda t: t.replace('{description: "unsubscribed (HTML, Swedish or English)"',
                         "{description: unsubscribed (HTML, Swedish or English)")),
    ("an unknown key in an operation", lambda t: t.replace("      x-service: notifier\n",
                                                           "      x-service: notifier\n      bogus: 1\n")),
    ("a response without a description", lambda t: t.replace("        \"200\": {description: the decision, ",
                                                             "        \"200\": {")),
])
def test_the_validator_refuses_a_broken_copy(name: str, broken: Any) -> None:
    text = broken(TEXT)
    assert text != TEXT, f"the break ({name}) must change the document"
    with pytest.raises(OpenAPIValidationError):
        _validate(text)


def test_each_path_is_under_the_server_and_tag_of_the_service_that_serves_it() -> None:
    doc = yaml.safe_load(TEXT)
    servers = {s["description"]: s["url"] for s in doc["servers"]}
    for path, item in doc["paths"].items():
        for method in METHODS & set(item):
            op = item[method]
            service = op["x-service"]
            if service == "all":
                assert "servers" not in item and op["tags"] == ["common"], path
            else:
                assert item["servers"] == [{"url": servers[service], "description": service}], path
                assert op["tags"] == [service], (method, path)
