"""Write the generated parts of the Kubernetes deployment from the contract, in one run.

    python -m deploy.k8s.generate          # write the files
    python -m deploy.k8s.generate --check  # exit 1 if a committed file is out of date

Sources and outputs:

* ``schemas.topics``: one Strimzi ``KafkaTopic`` per contract topic (``generated/kafka-topics.yaml``)
  and the ``KafkaUser``s with their ACLs (``generated/kafka-users.yaml``).
* :data:`OFFICE`: the privacy office's Deployment, Service, PodDisruptionBudget, NetworkPolicy (internal
  only) and ServiceMonitor (``generated/office.yaml``).
* :data:`SERVICES` below: per service a Deployment, Service, PodDisruptionBudget, NetworkPolicy,
  KEDA ``ScaledObject`` + ``TriggerAuthentication`` and ``ServiceMonitor`` (``generated/<service>.yaml``).
* ``deploy/prometheus/rules.yaml`` (the one hand-written copy of the alert rules): the
  ``PrometheusRule`` embedding the same groups (``generated/prometheusrule.yaml``).
* ``privacy_runtime/data_map.yaml``: copied to ``base/data_map.yaml`` for the ConfigMap generator
  (kustomize only reads files inside the kustomization folder).
* ``deploy/grafana/dashboards.py``: the dashboards ``deploy/grafana/*.json``.

``tests/ops`` fails when a committed output differs from what this module renders.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `python deploy/k8s/generate.py` works too
    sys.path.insert(0, str(ROOT))

from deploy.grafana import dashboards  # noqa: E402
from schemas import topics  # noqa: E402

K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
GENERATED = BASE / "generated"
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules.yaml"
DATA_MAP_SOURCE = ROOT / "privacy_runtime" / "data_map.yaml"
GRAFANA = ROOT / "deploy" / "grafana"

PART_OF = "privacy-services"
LABEL_PREFIX = "privacy.isopartner.se"
#: The Strimzi Kafka cluster (same namespace as the services) whose operators own topics and users.
KAFKA_CLUSTER = "privacy-kafka"
KAFKA_TLS_PORT = 9093
KAFKA_CA_SECRET = f"{KAFKA_CLUSTER}-cluster-ca-cert"
#: Secret the operators create (never committed): PRIVACY_MASTER_KEY, ADMIN_TOKEN, DATABASE_URL, SERVICE_TOKEN
#: (optional: PRIVACY_MASTER_KEY_PREVIOUS, and the notifier's SMTP_USERNAME, SMTP_PASSWORD).
APP_SECRET = "privacy-secrets"
IMAGE = "privacy-services"
UID = 10001
DATA_MAP_MOUNT = "/etc/privacy"
KAFKA_CA_MOUNT = "/etc/kafka-ca"

DAY_MS = 86_400_000
PARTITIONS = 12
DLQ_PARTITIONS = 1
REPLICAS = 3
MIN_INSYNC = 2


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    port_env: str
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    sends_commands: bool = False
    smtp: bool = False
    #: Other services whose HTTP API this one calls (NetworkPolicy egress to their port).
    calls: tuple[str, ...] = ()
    #: HTTP paths the public reaches through the Ingress (links in emails); the rest stays internal.
    public_paths: tuple[str, ...] = ()

    @property
    def app(self) -> str:
        return f"privacy-{self.name}"

    @property
    def group(self) -> str:
        """The service's Kafka consumer group (its faust worker uses `<group>-worker` for its own)."""
        return f"privacy-{self.name}"


#: What each service reads and writes. ``consumes`` must match the streams services/<name>/handlers.py registers
#: (tests/ops checks it); a topic missing here is denied by the broker in production (and nowhere else).
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="consent",
        port=6066,
        port_env="CONSENT_WEB_PORT",
        public_paths=("/v1/unsubscribe",),
        consumes=(
            topics.USER_REGISTERED,
            topics.CONSENT_CHANGED,
            topics.DSAR_REQUESTED,
            topics.PRIVACY_ACKS,
            topics.command_topic("consent"),
        ),
        produces=(
            topics.CONSENT_CHANGED,
            topics.ERASURE_REQUESTED,
            topics.NOTIFICATION_REQUESTED,
            topics.PRIVACY_AUDIT,
            topics.PRIVACY_ACKS,
        ),
        sends_commands=True,
    ),
    ServiceSpec(
        name="dsar",
        port=6067,
        port_env="DSAR_WEB_PORT",
        public_paths=("/v1/requests", "/v1/exports"),
        consumes=(
            topics.ERASURE_REQUESTED,
            topics.DSAR_REQUESTED,
            topics.PRIVACY_ACKS,
            topics.command_topic("dsar"),
            # Subject activity only, for the retention of inactive subjects.
            topics.USER_REGISTERED,
            topics.CONSENT_CHANGED,
        ),
        produces=(
            # Erasures of subjects inactive past the data map's retention (ground retention_expired).
            topics.ERASURE_REQUESTED,
            topics.DSAR_STATUS,
            topics.NOTIFICATION_REQUESTED,
            topics.PRIVACY_AUDIT,
            topics.PRIVACY_ACKS,
        ),
        sends_commands=True,
    ),
    ServiceSpec(
        name="notifier",
        port=6068,
        port_env="NOTIFIER_WEB_PORT",
        consumes=(
            topics.USER_REGISTERED,
            topics.NOTIFICATION_REQUESTED,
            topics.MERGER_NOTICE,
            topics.POLICY_CHANGED,
            topics.LEGAL_DISCLOSURE,
            topics.command_topic("notifier"),
            # Erasure holds: from verification of an erasure case on, only that case's emails.
            topics.DSAR_STATUS,
        ),
        produces=(topics.PRIVACY_AUDIT, topics.PRIVACY_ACKS),
        smtp=True,
        # Asks the consent decision API before any marketing email.
        # CONSENT_BASE_URL / CONSENT_PUBLIC_URL come from the privacy-config ConfigMap.
        calls=("consent",),
    ),
)

@dataclass(frozen=True)
class WebAppSpec:
    """A people-facing web app (services/<module>/, aiohttp, no faust): no consumer group, no lag to
    scale on; it publishes through its outbox and reads the services it `calls`."""

    name: str
    module: str
    port: int
    port_env: str
    produces: tuple[str, ...]
    calls: tuple[str, ...]
    #: (path, pathType) the public reaches through its Ingress.
    public_paths: tuple[tuple[str, str], ...]
    consumes: tuple[str, ...] = ()
    sends_commands: bool = False
    smtp: bool = False

    @property
    def app(self) -> str:
        return f"privacy-{self.name}"


WEB_APPS: tuple[WebAppSpec, ...] = (
    WebAppSpec(
        name="center",
        module="privacy_center",
        port=6069,
        port_env="PRIVACY_CENTER_WEB_PORT",
        produces=(topics.CONSENT_CHANGED, topics.DSAR_REQUESTED, topics.ERASURE_REQUESTED,
                  topics.NOTIFICATION_REQUESTED, topics.PRIVACY_AUDIT),
        calls=("consent", "dsar", "notifier"),
        # Its pages only: /metrics, /healthz and /readyz stay inside the cluster.
        public_paths=(("/", "Exact"), ("/sent", "Exact"), ("/s", "Prefix"), ("/manage", "Prefix"),
                      ("/me", "Prefix"), ("/done", "Exact"), ("/verify", "Prefix"), ("/sign-out", "Exact"),
                      ("/signed-out", "Exact"), ("/static", "Prefix")),
    ),
)


#: The privacy office (services/office): a web app, not a stream processor, so no consumer group and no
#: lag-based scaling; internal only (no Ingress path, see `office_network_policy`). It publishes intake
#: events and its audit entries, reads the dead-letter topics (no group) and replays to their topics, and
#: calls the three services' operator APIs.
OFFICE = ServiceSpec(
    name="office",
    port=6070,
    port_env="OFFICE_WEB_PORT",
    consumes=(),
    produces=(topics.DSAR_REQUESTED, topics.ERASURE_REQUESTED, topics.CONSENT_CHANGED, topics.PRIVACY_AUDIT),
    calls=("consent", "dsar", "notifier"),
)
#: Namespaces whose pods may open the office (the operators' VPN gateway or bastion); label them
#: `privacy.isopartner.se/office-access: "true"`. Never the ingress controller.
OFFICE_ACCESS_LABEL = "privacy.isopartner.se/office-access"

#: The operators' user (privacyctl): publish contract events, read and replay dead letters.
OPERATOR_USER = "privacy-operator"
OPERATOR_GROUP_PREFIX = "privacyctl"


def k8s_name(value: str) -> str:
    """A DNS-1123 subdomain for a topic or system id (``_`` is not allowed in resource names)."""
    name = re.sub(r"[^a-z0-9.-]", "-", value.lower()).strip("-.")
    if not name or len(name) > 253:
        raise ValueError(f"cannot make a resource name of {value!r}")
    return name


def system_user(system: str) -> str:
    return f"privacy-system-{k8s_name(system)}"


def labels(component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"privacy-{component}",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        **(extra or {}),
    }


def selector(svc: ServiceSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": svc.app}


# --- Kafka: topics -----------------------------------------------------------------------------


def topic_class(topic: str) -> str:
    if topic in topics.DLQ_TOPICS:
        return "dlq"
    if topic in topics.COMMAND_TOPICS:
        return "command"
    if topic in topics.OUTBOUND_TOPICS:
        return "outbound"
    return "inbound"


#: Retention per class. Dead letters are kept long enough to fix and replay them (privacyctl dlq
#: replay); events carry personal data, so nothing is kept longer than the work needs.
RETENTION_DAYS = {"inbound": 7, "outbound": 7, "command": 14, "dlq": 14}
AUDIT_RETENTION_DAYS = 90


def kafka_topic(topic: str) -> dict[str, Any]:
    cls = topic_class(topic)
    days = AUDIT_RETENTION_DAYS if topic == topics.PRIVACY_AUDIT else RETENTION_DAYS[cls]
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaTopic",
        "metadata": {
            "name": k8s_name(topic),
            "labels": {
                "strimzi.io/cluster": KAFKA_CLUSTER,
                "app.kubernetes.io/part-of": PART_OF,
                f"{LABEL_PREFIX}/topic-class": cls,
            },
        },
        "spec": {
            "topicName": topic,
            "partitions": DLQ_PARTITIONS if cls == "dlq" else PARTITIONS,
            "replicas": REPLICAS,
            "config": {
                "cleanup.policy": "delete",
                "retention.ms": days * DAY_MS,
                "min.insync.replicas": MIN_INSYNC,
            },
        },
    }


def kafka_topics() -> list[dict[str, Any]]:
    names = topics.all_topics()
    resources = [kafka_topic(t) for t in names]
    seen: dict[str, str] = {}
    for topic, res in zip(names, resources, strict=True):
        name = res["metadata"]["name"]
        if name in seen:
            raise ValueError(f"topics {seen[name]!r} and {topic!r} map to the same resource name {name!r}")
        seen[name] = topic
    return resources


# --- Kafka: users and ACLs -----------------------------------------------------------------------


def acl(kind: str, name: str, operations: list[str], pattern: str = "literal") -> dict[str, Any]:
    return {
        "resource": {"type": kind, "name": name, "patternType": pattern},
        "operations": operations,
        "host": "*",
    }


def kafka_user(name: str, acls: list[dict[str, Any]], component: str, role: str) -> dict[str, Any]:
    return {
        "apiVersion": "kafka.strimzi.io/v1beta2",
        "kind": "KafkaUser",
        "metadata": {
            "name": name,
            "labels": {
                "strimzi.io/cluster": KAFKA_CLUSTER,
                "app.kubernetes.io/part-of": PART_OF,
                "app.kubernetes.io/component": component,
                f"{LABEL_PREFIX}/kafka-role": role,
            },
        },
        "spec": {
            "authentication": {"type": "scram-sha-512"},
            "authorization": {"type": "simple", "acls": acls},
        },
    }


def service_user(svc: ServiceSpec) -> dict[str, Any]:
    operations: dict[str, list[str]] = {}
    for t in svc.consumes:
        operations.setdefault(t, []).append("Read")
    for t in (*svc.produces, *(topics.dlq_topic(t) for t in svc.consumes)):
        operations.setdefault(t, []).append("Write")
    acls = [acl("topic", t, [*ops, "Describe"]) for t, ops in operations.items()]
    if svc.sends_commands:
        acls.append(acl("topic", topics.COMMAND_TOPIC_PREFIX, ["Write", "Describe"], "prefix"))
    # The batch consumer's group and, by prefix, faust's `<group>-worker` group.
    acls.append(acl("group", svc.group, ["Read", "Describe"], "prefix"))
    # faust's own topics (<app id>-__assignor-__leader, changelogs): created and used by the app.
    acls.append(acl("topic", f"{svc.group}-", ["Create", "Read", "Write", "Describe"], "prefix"))
    return kafka_user(svc.app, acls, svc.name, "service")


def downstream_user(system: str) -> dict[str, Any]:
    """A downstream system: reads only its own command topic and writes only privacy-acks."""
    acls = [
        acl("topic", topics.command_topic(system), ["Read", "Describe"]),
        acl("topic", topics.PRIVACY_ACKS, ["Write", "Describe"]),
        acl("group", system_user(system), ["Read"], "prefix"),
    ]
    return kafka_user(system_user(system), acls, "downstream", "downstream-system")


def operator_user() -> dict[str, Any]:
    acls = [acl("topic", t, ["Write", "Describe"]) for t in topics.DATA_TOPICS]
    acls += [acl("topic", t, ["Read", "Describe"]) for t in topics.DLQ_TOPICS]
    acls.append(acl("group", OPERATOR_GROUP_PREFIX, ["Read"], "prefix"))
    return kafka_user(OPERATOR_USER, acls, "privacyctl", "operator")


def web_app_user(app: WebAppSpec) -> dict[str, Any]:
    """A web app only publishes (its outbox relay): write on its topics, nothing to read."""
    acls = [acl("topic", t, ["Write", "Describe"]) for t in app.produces]
    return kafka_user(app.app, acls, app.name, "web-app")


def office_user() -> dict[str, Any]:
    """Writes its intake events and audit entries, and (replay) the topics our services consume; reads
    the dead-letter topics without a consumer group."""
    written = dict.fromkeys((*OFFICE.produces, *topics.CONSUMED_TOPICS))
    acls = [acl("topic", t, ["Write", "Describe"]) for t in written]
    acls += [acl("topic", t, ["Read", "Describe"]) for t in topics.DLQ_TOPICS]
    return kafka_user(OFFICE.app, acls, OFFICE.name, "office")


def kafka_users() -> list[dict[str, Any]]:
    users = [service_user(s) for s in SERVICES]
    users += [web_app_user(a) for a in WEB_APPS]
    users += [downstream_user(s) for s in topics.EXTERNAL_SYSTEMS]
    users.append(operator_user())
    users.append(office_user())
    return users


# --- per service -------------------------------------------------------------------------------


def _probe(path: str, period: int, failures: int, initial: int = 0) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }
    if initial:
        probe["initialDelaySeconds"] = initial
    return probe


def deployment(svc: ServiceSpec) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": svc.port_env, "value": str(svc.port)},
        {"name": "STATE_DIR", "value": "/tmp/state"},
        {"name": "DATA_MAP_PATH", "value": f"{DATA_MAP_MOUNT}/data_map.yaml"},
        {"name": "KAFKA_SASL_USERNAME", "value": svc.app},
        # Strimzi writes the KafkaUser's password into a Secret named after the user.
        {"name": "KAFKA_SASL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": svc.app, "key": "password"}}},
    ]
    for key in ("PRIVACY_MASTER_KEY", "ADMIN_TOKEN", "DATABASE_URL"):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": key}}})
    env.append(
        {
            "name": "PRIVACY_MASTER_KEY_PREVIOUS",
            "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": "PRIVACY_MASTER_KEY_PREVIOUS", "optional": True}},
        }
    )
    # The internal reads' credential (the privacy center presents it; consent, dsar, notifier check it).
    env.append(
        {
            "name": "SERVICE_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": "SERVICE_TOKEN", "optional": True}},
        }
    )
    if svc.smtp:
        # Optional: a relay that trusts the cluster's address needs no login.
        for key in ("SMTP_USERNAME", "SMTP_PASSWORD"):
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": APP_SECRET, "key": key, "optional": True}}})
    container = {
        "name": svc.name,
        "image": IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", f"services.{svc.name}", "worker", "-l", "warning"],
        "ports": [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": "privacy-config"}}],
        "env": env,
        # Waits for PostgreSQL (up to 120 s) and applies migrations before it answers.
        "startupProbe": _probe("/healthz", 5, 36),
        "livenessProbe": _probe("/healthz", 15, 4),
        "readinessProbe": _probe("/readyz", 5, 3),
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "data-map", "mountPath": DATA_MAP_MOUNT, "readOnly": True},
            {"name": "kafka-ca", "mountPath": KAFKA_CA_MOUNT, "readOnly": True},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": svc.app, "labels": labels(svc.name)},
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": selector(svc)},
            "template": {
                "metadata": {"labels": labels(svc.name)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": key,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector(svc)},
                        }
                        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
                    ],
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
                        {
                            "name": "data-map",
                            "configMap": {
                                "name": "privacy-data-map",
                                "items": [{"key": "data_map.yaml", "path": "data_map.yaml"}],
                            },
                        },
                        {
                            "name": "kafka-ca",
                            "secret": {
                                "secretName": KAFKA_CA_SECRET,
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            },
                        },
                    ],
                },
            },
        },
    }


def service(svc: ServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": svc.app, "labels": labels(svc.name)},
        "spec": {
            "type": "ClusterIP",
            "selector": selector(svc),
            "ports": [{"name": "http", "port": svc.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def pdb(svc: ServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": svc.app, "labels": labels(svc.name)},
        "spec": {
            "minAvailable": 1,
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": selector(svc)},
        },
    }


def network_policy(svc: ServiceSpec) -> dict[str, Any]:
    egress: list[dict[str, Any]] = [
        {
            "to": [{"podSelector": {"matchLabels": {"strimzi.io/cluster": KAFKA_CLUSTER, "strimzi.io/kind": "Kafka"}}}],
            "ports": [{"protocol": "TCP", "port": KAFKA_TLS_PORT}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}},
                }
            ],
            "ports": [{"protocol": "TCP", "port": 5432}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
    ]
    if svc.smtp:
        # The SMTP relay may be outside the cluster: any destination, SMTP ports only. Keep this rule
        # fourth (index 3): the dev overlay adds its SMTP catcher's port to it.
        egress.append({"ports": [{"protocol": "TCP", "port": p} for p in (25, 465, 587)]})
    for other in svc.calls:
        target = next(o for o in SERVICES if o.name == other)
        egress.append(
            {
                "to": [{"podSelector": {"matchLabels": selector(target)}}],
                "ports": [{"protocol": "TCP", "port": target.port}],
            }
        )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": svc.app, "labels": labels(svc.name)},
        "spec": {
            "podSelector": {"matchLabels": selector(svc)},
            "policyTypes": ["Ingress", "Egress"],
            # On the service's own port only, and only from who has a reason to call: see API_CLIENTS.
            "ingress": [{"from": API_CLIENTS, "ports": [{"protocol": "TCP", "port": svc.port}]}],
            "egress": egress,
        },
    }


#: Who may reach a service's port: the privacy namespace's own pods (the notifier asks consent for
#: decisions; privacyctl run as a pod), the ingress controller (the emailed links), Prometheus, and the
#: namespaces of platform services that ask for decisions, which their operators label
#: `privacy.isopartner.se/api-client: "true"`. Anything else (any pod in any namespace) is refused:
#: the decision and consent APIs answer without a token.
API_CLIENT_LABEL = "privacy.isopartner.se/api-client"
API_CLIENTS: list[dict[str, Any]] = [
    {"podSelector": {}},
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
    {"namespaceSelector": {"matchLabels": {API_CLIENT_LABEL: "true"}}},
]


def trigger_authentication(svc: ServiceSpec) -> dict[str, Any]:
    """KEDA reads the lag with the service's own Kafka user (taken from the Deployment's env)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": {"name": f"{svc.app}-kafka", "labels": labels(svc.name)},
        "spec": {
            "env": [
                {"parameter": "username", "name": "KAFKA_SASL_USERNAME", "containerName": svc.name},
                {"parameter": "password", "name": "KAFKA_SASL_PASSWORD", "containerName": svc.name},
            ],
            "secretTargetRef": [{"parameter": "ca", "name": KAFKA_CA_SECRET, "key": "ca.crt"}],
        },
    }


def scaled_object(svc: ServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": svc.app, "labels": labels(svc.name)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc.app},
            "minReplicaCount": 2,
            # More members than partitions would sit idle (keyed by subject: partitions bound parallelism).
            "maxReplicaCount": PARTITIONS,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 300,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        # Replaced by kustomize with KAFKA_BOOTSTRAP_SERVERS from the privacy-config ConfigMap.
                        "bootstrapServers": "KAFKA_BOOTSTRAP_SERVERS",
                        "consumerGroup": svc.group,
                        "lagThreshold": "500",
                        "activationLagThreshold": "0",
                        "offsetResetPolicy": "earliest",
                        "allowIdleConsumers": "false",
                        "sasl": "scram_sha512",
                        "tls": "enable",
                    },
                    "authenticationRef": {"name": f"{svc.app}-kafka"},
                }
            ],
        },
    }


def service_monitor(svc: ServiceSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": svc.app, "labels": labels(svc.name)},
        "spec": {
            "selector": {"matchLabels": selector(svc)},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}],
        },
    }


def service_resources(svc: ServiceSpec) -> list[dict[str, Any]]:
    return [
        deployment(svc),
        service(svc),
        pdb(svc),
        network_policy(svc),
        trigger_authentication(svc),
        scaled_object(svc),
        service_monitor(svc),
    ]


def web_app_resources(app: WebAppSpec) -> list[dict[str, Any]]:
    """Deployment, Service, PodDisruptionBudget, NetworkPolicy, ServiceMonitor and Ingress of a web app:
    the services' shapes, without the Kafka consumer's parts, without ADMIN_TOKEN (it faces the public
    and holds no operator power), reached from the ingress controller and Prometheus only."""
    spec: Any = app
    deploy = deployment(spec)
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    c["command"] = ["python", "-m", f"services.{app.module}"]
    c["env"] = [e for e in c["env"] if e["name"] != "ADMIN_TOKEN"]
    c["env"] += [
        {"name": "PRIVACY_CENTER_URL", "value": f"https://{PUBLIC_HOST}"},
        {"name": "TRUST_FORWARDED_FOR", "value": "true"},
    ] + [{"name": f"{other.upper()}_BASE_URL", "value": f"http://privacy-{other}:{_port_of(other)}"}
         for other in app.calls]
    c["resources"] = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
    policy = network_policy(spec)
    policy["spec"]["ingress"] = [{"from": [peer for peer in API_CLIENTS if "namespaceSelector" in peer
                                           and API_CLIENT_LABEL not in str(peer)],
                                  "ports": [{"protocol": "TCP", "port": app.port}]}]
    public = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": f"{app.app}-public", "labels": labels(app.name)},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [PUBLIC_HOST], "secretName": "privacy-public-tls"}],
            "rules": [{"host": PUBLIC_HOST, "http": {"paths": [
                {"path": path, "pathType": kind,
                 "backend": {"service": {"name": app.app, "port": {"number": app.port}}}}
                for path, kind in app.public_paths]}}],
        },
    }
    return [deploy, service(spec), pdb(spec), policy, service_monitor(spec), public]


def _port_of(name: str) -> int:
    return next(s.port for s in SERVICES if s.name == name)


def office_network_policy() -> dict[str, Any]:
    """The office's own port only from this namespace, Prometheus and the namespaces labelled
    OFFICE_ACCESS_LABEL; out to Kafka, PostgreSQL, DNS and the three services' ports."""
    policy = network_policy(OFFICE)
    policy["spec"]["ingress"] = [{
        "from": [
            {"podSelector": {}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
            {"namespaceSelector": {"matchLabels": {OFFICE_ACCESS_LABEL: "true"}}},
        ],
        "ports": [{"protocol": "TCP", "port": OFFICE.port}],
    }]
    return policy


def office_resources() -> list[dict[str, Any]]:
    office = deployment(OFFICE)
    container = office["spec"]["template"]["spec"]["containers"][0]
    container["command"] = ["python", "-m", "services.office"]
    container["env"] += [{"name": f"{name.upper()}_URL", "value": f"http://{svc.app}:{svc.port}"}
                         for name in OFFICE.calls for svc in SERVICES if svc.name == name]
    # Operators' names and the SHA-256 of their tokens (hashes only), kept with the other secrets.
    container["env"].append({"name": "OFFICE_OPERATORS", "valueFrom": {"secretKeyRef": {
        "name": APP_SECRET, "key": "OFFICE_OPERATORS", "optional": True}}})
    return [office, service(OFFICE), pdb(OFFICE), office_network_policy(), service_monitor(OFFICE)]


# --- public entry -------------------------------------------------------------------------------

PUBLIC_HOST = "privacy.isopartner.se"


def ingress() -> dict[str, Any]:
    """Only the paths emailed links point at (unsubscribe, request status/verify, export downloads).

    Operator endpoints (/v1/admin), decisions, consents and /metrics stay inside the cluster.
    """
    paths = [
        {
            "path": path,
            "pathType": "Prefix",
            "backend": {"service": {"name": svc.app, "port": {"number": svc.port}}},
        }
        for svc in SERVICES
        for path in svc.public_paths
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "privacy-public", "labels": labels("public")},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": [PUBLIC_HOST], "secretName": "privacy-public-tls"}],
            "rules": [{"host": PUBLIC_HOST, "http": {"paths": paths}}],
        },
    }


# --- alerts ------------------------------------------------------------------------------------


def prometheus_rule(rules_text: str) -> dict[str, Any]:
    rules = yaml.safe_load(rules_text)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "privacy-services", "labels": labels("alerts")},
        "spec": {"groups": rules["groups"]},
    }


# --- rendering -----------------------------------------------------------------------------------


def _header(source: str) -> str:
    return f"# Generated by deploy/k8s/generate.py from {source}. Do not edit: run `python -m deploy.k8s.generate`.\n"


def dump_all(docs: list[dict[str, Any]], source: str) -> str:
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120, explicit_start=True)
    return _header(source) + body


def render() -> dict[Path, str]:
    """Every generated file, path -> content."""
    out: dict[Path, str] = {
        GENERATED / "kafka-topics.yaml": dump_all(kafka_topics(), "schemas.topics.all_topics()"),
        GENERATED / "kafka-users.yaml": dump_all(kafka_users(), "schemas.topics and SERVICES"),
        GENERATED / "prometheusrule.yaml": dump_all(
            [prometheus_rule(RULES_FILE.read_text())], "deploy/prometheus/rules.yaml"
        ),
        GENERATED / "ingress.yaml": dump_all([ingress()], "SERVICES in this script"),
        BASE / "data_map.yaml": DATA_MAP_SOURCE.read_text(),
    }
    for svc in SERVICES:
        out[GENERATED / f"{svc.name}.yaml"] = dump_all(service_resources(svc), "SERVICES in this script")
    for web_app in WEB_APPS:
        out[GENERATED / f"{web_app.module}.yaml"] = dump_all(web_app_resources(web_app), "WEB_APPS in this script")
    out[GENERATED / "office.yaml"] = dump_all(office_resources(), "OFFICE in this script")
    for filename, board in dashboards.all_dashboards().items():
        out[GRAFANA / filename] = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
    return out


def stale(rendered: dict[Path, str] | None = None) -> list[Path]:
    """Generated files whose committed content differs from a fresh render."""
    rendered = rendered if rendered is not None else render()
    return [p for p, text in rendered.items() if not p.exists() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    rendered = render()
    changed = stale(rendered)
    if args.check:
        for path in changed:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        if changed:
            print("run: python -m deploy.k8s.generate", file=sys.stderr)
        return 1 if changed else 0
    for path in changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
