"""The Kubernetes deployment: overlays render, every manifest validates offline, and the shape is right."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import validate
from deploy.k8s import generate
from schemas import topics
from services.notifier.settings import NotifierSettings
from tests.helpers import consumed_topics

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("dev", "prod")
SERVICES = {s.name: s for s in generate.SERVICES}
WEB_APPS = {a.name: a for a in generate.WEB_APPS}
SECRET_ENV = ("PRIVACY_MASTER_KEY", "ADMIN_TOKEN", "DATABASE_URL", "KAFKA_SASL_PASSWORD")

Docs = list[dict[str, Any]]


def of_kind(docs: Docs, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- generation and rendering ------------------------------------------------------------------


def test_generated_files_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p in generate.stale()]
    assert stale == [], f"out of date (run `python -m deploy.k8s.generate`): {stale}"


def test_overlays_exist() -> None:
    assert validate.overlays() == sorted(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders(rendered: dict[str, Docs], overlay: str) -> None:
    kinds = {d["kind"] for d in rendered[overlay]}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "KafkaTopic",
        "KafkaUser",
        "ScaledObject",
        "TriggerAuthentication",
        "PrometheusRule",
        "ServiceMonitor",
    } <= kinds
    namespace = {"dev": "privacy-dev", "prod": "privacy"}[overlay]
    assert {d["metadata"].get("namespace") for d in rendered[overlay]} == {namespace}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_manifest_validates(
    rendered: dict[str, Docs], validator: validate.ManifestValidator, overlay: str
) -> None:
    problems = [str(p) for p in validator.validate_all(rendered[overlay])]
    assert problems == []


def test_validator_is_strict(rendered: dict[str, Docs], validator: validate.ManifestValidator) -> None:
    """A typo in a core kind or a custom resource fails; an unknown kind is an error, not a skip."""
    docs = rendered["prod"]
    deployment = copy.deepcopy(of_kind(docs, "Deployment")[0])
    container(deployment)["readinessProbe"]["httpGet"]["pth"] = "/readyz"
    user = copy.deepcopy(of_kind(docs, "KafkaUser")[0])
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]
    scaled = copy.deepcopy(of_kind(docs, "ScaledObject")[0])
    scaled["spec"]["triggers"][0]["metadata"]["consumergroup"] = "x"
    rule = copy.deepcopy(of_kind(docs, "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = "15 minutes"
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    for doc in (deployment, user, scaled, rule, unknown):
        assert validator.problems(doc), f"{doc['kind']} with an error passed validation"


# --- Kafka ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_contract_topic_has_a_kafka_topic(rendered: dict[str, Docs], overlay: str) -> None:
    resources = of_kind(rendered[overlay], "KafkaTopic")
    names = [t["spec"]["topicName"] for t in resources]
    assert sorted(names) == sorted(topics.all_topics())
    for resource in resources:
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == generate.KAFKA_CLUSTER
        if resource["spec"]["topicName"].endswith(".dlq"):
            assert resource["spec"]["partitions"] == 1
        assert resource["spec"]["config"]["min.insync.replicas"] <= resource["spec"]["replicas"]


def _topic_acls(user: dict[str, Any]) -> list[tuple[str, str, set[str]]]:
    return [
        (a["resource"]["name"], a["resource"].get("patternType", "literal"), set(a["operations"]))
        for a in user["spec"]["authorization"]["acls"]
        if a["resource"]["type"] == "topic"
    ]


@pytest.mark.parametrize("system", topics.EXTERNAL_SYSTEMS)
def test_downstream_system_reads_only_its_commands_and_writes_only_acks(rendered: dict[str, Docs], system: str) -> None:
    user = named(rendered["prod"], "KafkaUser", generate.system_user(system))
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    acls = _topic_acls(user)
    assert all(pattern == "literal" for _, pattern, _ in acls)
    readable = {name for name, _, ops in acls if ops & {"Read", "All"}}
    writable = {name for name, _, ops in acls if ops & {"Write", "All", "Create", "Delete", "Alter"}}
    assert readable == {topics.command_topic(system)}
    assert writable == {topics.PRIVACY_ACKS}
    groups = [a for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"]
    assert [g["resource"]["name"] for g in groups] == [generate.system_user(system)]
    assert not [a for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "cluster"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_kafka_user_covers_its_topics_and_group(rendered: dict[str, Docs], name: str) -> None:
    svc = SERVICES[name]
    user = named(rendered["prod"], "KafkaUser", svc.app)
    acls = _topic_acls(user)
    literal = {n: ops for n, pattern, ops in acls if pattern == "literal"}
    for topic in svc.consumes:
        assert "Read" in literal[topic]
        assert "Write" in literal[topics.dlq_topic(topic)]
    for topic in svc.produces:
        assert "Write" in literal[topic]
    assert topics.command_topic(name) in svc.consumes  # each service is a system too
    group = [a for a in user["spec"]["authorization"]["acls"] if a["resource"]["type"] == "group"]
    assert {g["resource"]["name"] for g in group} == {f"privacy-{name}"}


# --- per service -------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", SERVICES)
def test_service_has_probes_pdb_networkpolicy_and_scaling(rendered: dict[str, Docs], overlay: str, name: str) -> None:
    docs = rendered[overlay]
    svc = SERVICES[name]
    deployment = named(docs, "Deployment", svc.app)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    c = container(deployment)
    assert c["command"] == ["python", "-m", f"services.{name}", "worker", "-l", "warning"]
    assert c["ports"] == [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]

    service = named(docs, "Service", svc.app)
    assert selects(service["spec"]["selector"], pod_labels)
    assert service["spec"]["ports"][0]["port"] == svc.port

    pdb = named(docs, "PodDisruptionBudget", svc.app)
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert "minAvailable" in pdb["spec"] or "maxUnavailable" in pdb["spec"]

    policy = named(docs, "NetworkPolicy", svc.app)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert ingress_ports == [svc.port]
    # Never from anywhere: every ingress rule names its sources, none of them "all namespaces".
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits every pod in the cluster"
        assert all(peer.get("namespaceSelector") != {} for peer in rule["from"])
    egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert {53, 5432, generate.KAFKA_TLS_PORT} <= egress_ports
    assert (587 in egress_ports) is svc.smtp

    scaled = named(docs, "ScaledObject", svc.app)
    assert scaled["spec"]["scaleTargetRef"]["name"] == svc.app
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == f"privacy-{name}"
    config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("privacy-config"))
    assert trigger["metadata"]["bootstrapServers"] == config["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    auth = named(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {e["name"] for e in auth["spec"]["env"]} <= {e["name"] for e in c["env"]}
    assert scaled["spec"]["maxReplicaCount"] <= min(
        t["spec"]["partitions"] for t in of_kind(docs, "KafkaTopic") if t["spec"]["topicName"] in svc.consumes
    )

    monitor = named(docs, "ServiceMonitor", svc.app)
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down(rendered: dict[str, Docs], overlay: str) -> None:
    for deployment in of_kind(rendered[overlay], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        c = container(deployment)
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        env = {e["name"]: e for e in c["env"]}
        assert env["STATE_DIR"]["value"] == "/tmp/state"
        data_map = Path(env["DATA_MAP_PATH"]["value"])
        mount = mounts[str(data_map.parent)]
        assert volumes[mount["name"]]["configMap"]["name"].startswith("privacy-data-map")
        assert mount["readOnly"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_references_only(rendered: dict[str, Docs], overlay: str) -> None:
    docs = rendered[overlay]
    assert of_kind(docs, "Secret") == []
    for deployment in of_kind(docs, "Deployment"):
        env = {e["name"]: e for e in container(deployment)["env"]}
        component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
        # A web app facing the public (the privacy center) gets every secret but the operators' token.
        names = SECRET_ENV if component in SERVICES else [n for n in SECRET_ENV if n != "ADMIN_TOKEN"]
        for name in names:
            assert "value" not in env[name], f"{name} has a literal value"
            assert env[name]["valueFrom"]["secretKeyRef"]["name"]
    for config in of_kind(docs, "ConfigMap"):
        assert not set(config.get("data", {})) & set(SECRET_ENV)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_data_map_config_map_is_the_data_map(rendered: dict[str, Docs], overlay: str) -> None:
    maps = [d for d in of_kind(rendered[overlay], "ConfigMap") if d["metadata"]["name"].startswith("privacy-data-map")]
    assert len(maps) == 1
    assert maps[0]["data"]["data_map.yaml"] == (ROOT / "privacy_runtime" / "data_map.yaml").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dashboards_and_rules_are_packaged(rendered: dict[str, Docs], overlay: str) -> None:
    docs = rendered[overlay]
    boards = [d for d in of_kind(docs, "ConfigMap") if d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    packaged = {name: text for d in boards for name, text in d["data"].items()}
    files = {p.name: p.read_text() for p in (ROOT / "deploy" / "grafana").glob("*.json")}
    assert packaged == files
    for text in packaged.values():
        json.loads(text)
    rule = named(docs, "PrometheusRule", "privacy-services")
    rules_file = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yaml").read_text())
    assert rule["spec"]["groups"] == rules_file["groups"]


def test_dev_and_prod_differ_where_they_should(rendered: dict[str, Docs]) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    assert {d["spec"]["replicas"] for d in of_kind(dev, "Deployment")} == {1}
    assert {d["spec"]["replicas"] for d in of_kind(prod, "Deployment")} == {2}
    assert {t["spec"]["replicas"] for t in of_kind(dev, "KafkaTopic")} == {1}
    assert {t["spec"]["replicas"] for t in of_kind(prod, "KafkaTopic")} == {3}
    assert {p["spec"].get("minAvailable") for p in of_kind(prod, "PodDisruptionBudget")} == {1}


@pytest.mark.parametrize("name", SERVICES)
def test_acl_table_matches_the_streams(name: str) -> None:
    """A topic a service reads but the KafkaUser may not read would fail only in production."""
    if not (ROOT / "services" / name / "handlers.py").is_file():
        pytest.skip(f"services/{name} consumes no streams")
    assert set(consumed_topics(name)) == set(SERVICES[name].consumes), (
        "update SERVICES in deploy/k8s/generate.py, then run `python -m deploy.k8s.generate`"
    )


def test_notifier_reaches_consent_and_smtp(rendered: dict[str, Docs]) -> None:
    for overlay in OVERLAYS:
        policy = named(rendered[overlay], "NetworkPolicy", "privacy-notifier")
        rules = policy["spec"]["egress"]
        to_consent = [
            r
            for r in rules
            for t in r.get("to", [])
            if t.get("podSelector", {}).get("matchLabels") == {"app.kubernetes.io/name": "privacy-consent"}
        ]
        assert [p["port"] for r in to_consent for p in r["ports"]] == [SERVICES["consent"].port]
        smtp = next(r for r in rules if any(p["port"] == 587 for p in r["ports"]))
        assert (1025 in {p["port"] for p in smtp["ports"]}) is (overlay == "dev")
        config = next(
            d for d in of_kind(rendered[overlay], "ConfigMap") if d["metadata"]["name"].startswith("privacy-config")
        )
        assert config["data"]["CONSENT_BASE_URL"] == "http://privacy-consent:6066"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_exposes_only_public_paths(rendered: dict[str, Docs], overlay: str) -> None:
    docs = rendered[overlay]
    ingress = named(docs, "Ingress", "privacy-public")
    paths = {p["path"]: p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert set(paths) == {"/v1/unsubscribe", "/v1/requests", "/v1/exports"}
    for backend in paths.values():
        service = named(docs, "Service", backend["name"])
        assert backend["port"]["number"] == service["spec"]["ports"][0]["port"]
    config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("privacy-config"))
    host = ingress["spec"]["rules"][0]["host"]
    assert config["data"]["PUBLIC_BASE_URL"] == f"https://{host}"
    assert config["data"]["CONSENT_PUBLIC_URL"] == f"https://{host}"


def test_the_notifier_requires_tls_to_the_relay_and_may_log_in(rendered: dict[str, Docs]) -> None:
    """On 587 an unset SMTP_STARTTLS means opportunistic TLS: a stripped offer would send in clear."""
    for overlay, starttls in (("prod", "true"), ("dev", "false")):  # dev: a local catcher without TLS
        docs = rendered[overlay]
        config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("privacy-config"))
        assert config["data"]["SMTP_STARTTLS"] == starttls
        for deployment in of_kind(docs, "Deployment"):
            env = {e["name"]: e for e in container(deployment)["env"]}
            spec = {**SERVICES, **WEB_APPS, generate.OFFICE.name: generate.OFFICE}
            smtp = spec[deployment["metadata"]["labels"]["app.kubernetes.io/component"]].smtp
            for name in ("SMTP_USERNAME", "SMTP_PASSWORD"):
                assert (name in env) is smtp
                if smtp:
                    ref = env[name]["valueFrom"]["secretKeyRef"]
                    assert ref == {"name": generate.APP_SECRET, "key": name, "optional": True}


#: Emails per second the production relay accepts (docs/operations.md, "Overlays").
RELAY_EMAILS_PER_SECOND = 500


def test_the_notifiers_rate_limit_holds_for_all_replicas_together(rendered: dict[str, Docs]) -> None:
    """SMTP_RATE_PER_SECOND is a token bucket per process: KEDA's most replicas times it is the relay's load."""
    docs = rendered["prod"]
    config = next(d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("privacy-config"))
    most = named(docs, "ScaledObject", SERVICES["notifier"].app)["spec"]["maxReplicaCount"]
    assert "SMTP_RATE_PER_SECOND" in config["data"], "the default (500 per replica) would multiply by the replicas"
    assert float(config["data"]["SMTP_RATE_PER_SECOND"]) * most <= RELAY_EMAILS_PER_SECOND


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_notifiers_smtp_connections_are_a_setting_it_accepts(rendered: dict[str, Docs], overlay: str) -> None:
    """Each sending lane holds a database connection of the pool (10) while it sends: the notifier
    accepts 1 to 8, and would not start otherwise."""
    config = next(d for d in of_kind(rendered[overlay], "ConfigMap")
                  if d["metadata"]["name"].startswith("privacy-config"))
    connections = int(config["data"]["SMTP_CONNECTIONS"])
    fields = NotifierSettings.model_fields["smtp_connections"].metadata
    assert 1 <= connections <= 8
    assert any(getattr(f, "le", None) == 8 for f in fields) and any(getattr(f, "ge", None) == 1 for f in fields)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_privacy_center_is_public_only_on_its_pages_and_holds_no_operator_power(
        rendered: dict[str, Docs], overlay: str) -> None:
    docs = rendered[overlay]
    app = next(a for a in generate.WEB_APPS if a.module == "privacy_center")
    deployment = named(docs, "Deployment", app.app)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    c = container(deployment)
    assert c["command"] == ["python", "-m", "services.privacy_center"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = {e["name"]: e for e in c["env"]}
    assert "ADMIN_TOKEN" not in env, "the public-facing center must not hold the operators' token"
    assert env["SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "SERVICE_TOKEN"
    assert env["PRIVACY_CENTER_URL"]["value"] == f"https://{generate.PUBLIC_HOST}"
    for name in ("consent", "dsar", "notifier"):  # the services check the token it presents
        other = container(named(docs, "Deployment", f"privacy-{name}"))
        assert "SERVICE_TOKEN" in {e["name"] for e in other["env"]}

    policy = named(docs, "NetworkPolicy", app.app)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels)
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert sources and all("podSelector" not in peer for peer in sources), "no pod of the namespace needs to call it"
    assert {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in sources} == \
        {"ingress-nginx", "monitoring"}
    called = {p["port"] for rule in policy["spec"]["egress"] if "to" in rule and any(
        "app.kubernetes.io/name" in peer.get("podSelector", {}).get("matchLabels", {}) and
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"].startswith("privacy-")
        for peer in rule["to"]) for p in rule["ports"]}
    assert called == {6066, 6067, 6068}
    assert 587 not in {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}

    user = named(docs, "KafkaUser", app.app)
    acls = user["spec"]["authorization"]["acls"]
    assert all("Read" not in a["operations"] for a in acls), "it consumes nothing"
    assert {a["resource"]["name"] for a in acls} == set(app.produces)

    ingress = named(docs, "Ingress", f"{app.app}-public")
    paths = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert {"/", "/s", "/manage", "/me", "/verify"} <= paths
    assert not paths & {"/metrics", "/healthz", "/readyz", "/v1"}
    for path in ingress["spec"]["rules"][0]["http"]["paths"]:
        assert path["backend"]["service"]["name"] == app.app
    assert selects(named(docs, "Service", app.app)["spec"]["selector"], pod_labels)
    assert named(docs, "ServiceMonitor", app.app)["spec"]["endpoints"][0]["path"] == "/metrics"
    assert named(docs, "PodDisruptionBudget", app.app)
