"""The privacy office's deployment: internal only, and only what it needs from Kafka."""

from __future__ import annotations

from deploy.k8s import generate
from schemas import topics


def _kind(kind: str) -> dict:  # type: ignore[type-arg]
    [doc] = [d for d in generate.office_resources() if d["kind"] == kind]
    return doc


def test_the_office_is_never_on_the_public_ingress() -> None:
    backends = {p["backend"]["service"]["name"] for rule in generate.ingress()["spec"]["rules"]
                for p in rule["http"]["paths"]}
    assert generate.OFFICE.app not in backends
    sources = _kind("NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} not in sources
    assert {"namespaceSelector": {"matchLabels": {generate.OFFICE_ACCESS_LABEL: "true"}}} in sources
    assert _kind("Service")["spec"]["type"] == "ClusterIP"


def test_the_office_reaches_the_three_services_and_runs_the_web_app() -> None:
    policy = _kind("NetworkPolicy")
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", ())}
    assert {6066, 6067, 6068} <= ports
    container = _kind("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "services.office"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DSAR_URL"]["value"] == "http://privacy-dsar:6067"
    assert "value" not in env["OFFICE_OPERATORS"] and "value" not in env["ADMIN_TOKEN"]


def test_the_office_kafka_user_reads_dead_letters_and_writes_intake_and_replays_only() -> None:
    [user] = [u for u in generate.kafka_users() if u["metadata"]["name"] == generate.OFFICE.app]
    acls = user["spec"]["authorization"]["acls"]
    reads = {a["resource"]["name"] for a in acls if "Read" in a["operations"]}
    writes = {a["resource"]["name"] for a in acls if "Write" in a["operations"]}
    assert reads == set(topics.DLQ_TOPICS)
    assert {topics.DSAR_REQUESTED, topics.ERASURE_REQUESTED, topics.CONSENT_CHANGED, topics.PRIVACY_AUDIT} <= writes
    assert not writes & set(topics.DLQ_TOPICS)
    assert not any(a["resource"]["type"] == "group" for a in acls)
