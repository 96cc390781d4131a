"""Render the kustomize overlays and validate every manifest offline.

    python -m deploy.validate            # render dev and prod, validate, print a summary (exit 1 on errors)

Kubernetes kinds are checked against the strict JSON schemas of one Kubernetes version, unpacked into
``var/tools/k8s-schemas`` by ``deploy/tools/install.sh`` (from the PyPI package kubernetes-validate).
Custom resources (Strimzi, KEDA, Prometheus Operator) are checked against the strict schemas committed
in ``deploy/schemas``. A kind with no schema is an error, not a skip. Nothing is downloaded here.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("PRIVACY_TOOLS_DIR", ROOT / "var" / "tools"))
K8S_VERSION = "1.32.0"
K8S_SCHEMAS = TOOLS / "k8s-schemas" / f"v{K8S_VERSION}-local-strict"
CRD_SCHEMAS = ROOT / "deploy" / "schemas"
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
INSTALL_HINT = "run deploy/tools/install.sh (make does this at setup)"


class ToolMissing(RuntimeError):
    """A tool or schema set that deploy/tools/install.sh installs is not there."""


def tool(name: str) -> Path | None:
    """``var/tools/bin/<name>`` if installed there, else the one on PATH, else None."""
    local = TOOLS / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def require_tool(name: str) -> Path:
    path = tool(name)
    if path is None:
        raise ToolMissing(f"{name} is not installed in {TOOLS / 'bin'} or on PATH; {INSTALL_HINT}")
    return path


def overlays() -> list[str]:
    return sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").is_file())


def render(overlay: str) -> list[dict[str, Any]]:
    """``kustomize build deploy/k8s/overlays/<overlay>`` as a list of documents."""
    kustomize = require_tool("kustomize")
    result = subprocess.run(
        [str(kustomize), "build", str(OVERLAYS / overlay)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"kustomize build {overlay} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _api_group(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def schema_file(doc: dict[str, Any]) -> Path:
    """Which schema validates ``doc`` (raises LookupError if none)."""
    kind = str(doc.get("kind", "")).lower()
    group, version = _api_group(str(doc.get("apiVersion", "")))
    if "." in group:
        crd = CRD_SCHEMAS / f"{kind}-{group}-{version}.json"
        if crd.is_file():
            return crd
    short = re.sub(r"\..*$", "", group)
    name = f"{kind}-{short}-{version}.json" if short else f"{kind}-{version}.json"
    path = K8S_SCHEMAS / name
    if path.is_file():
        return path
    raise LookupError(f"no schema for {doc.get('apiVersion')}/{doc.get('kind')} (looked for {name})")


@dataclass(frozen=True)
class Problem:
    resource: str
    message: str

    def __str__(self) -> str:
        return f"{self.resource}: {self.message}"


class ManifestValidator:
    def __init__(self, k8s_schemas: Path = K8S_SCHEMAS, crd_schemas: Path = CRD_SCHEMAS):
        definitions = k8s_schemas / "_definitions.json"
        if not definitions.is_file():
            raise ToolMissing(f"Kubernetes JSON schemas not found in {k8s_schemas}; {INSTALL_HINT}")
        self.k8s_schemas = k8s_schemas
        self.crd_schemas = crd_schemas
        self.registry: Registry = Resource.from_contents(json.loads(definitions.read_text())) @ Registry()

    @functools.cache  # noqa: B019  (one validator per schema file for the life of this object)
    def _validator(self, path: Path) -> Draft202012Validator:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema, registry=self.registry)

    def problems(self, doc: dict[str, Any]) -> list[Problem]:
        name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        try:
            path = schema_file(doc)
        except LookupError as exc:
            return [Problem(name, str(exc))]
        errors = sorted(self._validator(path).iter_errors(doc), key=lambda e: list(e.absolute_path))
        return [Problem(name, f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}") for e in errors]

    def validate_all(self, docs: Iterable[dict[str, Any]]) -> list[Problem]:
        return [p for doc in docs for p in self.problems(doc)]


def main() -> int:
    try:
        validator = ManifestValidator()
        status = 0
        for overlay in overlays():
            docs = render(overlay)
            problems = validator.validate_all(docs)
            print(f"{overlay}: {len(docs)} manifests, {len(problems)} problems")
            for problem in problems:
                print(f"  {problem}")
            status |= bool(problems)
        return status
    except ToolMissing as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
