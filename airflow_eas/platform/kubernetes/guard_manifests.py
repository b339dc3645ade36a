"""What runs ``eas guard`` in a cluster: ServiceAccount, Role, RoleBinding and a one-replica Deployment.

``eas render --guard`` prints them. Two replicas never fight: each pass runs only while the
replica leads on the Lease ``airflow-eas-guard`` (conditional writes, one winner), and a
stopping leader gives that Lease back so a standby takes over at once. The Role grants only
the verbs ``eas guard`` uses (tests/platform/kubernetes/test_guard.py records them).
"""

from __future__ import annotations

import json
from typing import Any

from airflow_eas.platform.kubernetes.config import ClusterSettings
from airflow_eas.platform.kubernetes.manifests import MANAGED, Manifest

GUARD_NAME = "airflow-eas-guard"
DEFAULT_GUARD_IMAGE = "airflow-eas/guard:latest"

# (API group, resource) -> verbs, each with what uses it.
GUARD_RULES: list[tuple[str, str, list[str]]] = [
    # group leases: watched (list), marked revoked or lapsed (get, patch); the leader Lease: taken, renewed,
    # given back at shutdown (get, create, patch, delete)
    ("coordination.k8s.io", "leases", ["get", "list", "create", "patch", "delete"]),
    # a group's weights: read and patched back to the stable member
    ("gateway.networking.k8s.io", "httproutes", ["get", "patch"]),
    # a group's members (list by group label) and a member's group for its metrics (get)
    ("apps", "deployments", ["get", "list"]),
    # what the guard did, on the group's route and the members
    ("", "events", ["create"]),
]


def guard_manifests(settings: ClusterSettings, *, image: str = DEFAULT_GUARD_IMAGE) -> list[Manifest]:
    """The guard of ``settings.namespace``, reading Prometheus at ``settings.prometheus_url``."""
    ns = settings.namespace
    meta = {"name": GUARD_NAME, "namespace": ns, "labels": {**MANAGED, "app.kubernetes.io/name": GUARD_NAME}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": [group], "resources": [resource], "verbs": verbs}
                   for group, resource, verbs in GUARD_RULES]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": GUARD_NAME},
         "subjects": [{"kind": "ServiceAccount", "name": GUARD_NAME, "namespace": ns}]},
        _deployment(settings, meta, image),
    ]


def _deployment(settings: ClusterSettings, meta: dict[str, Any], image: str) -> Manifest:
    # Only what the guard reads: where Prometheus is and the query set (no gateway, images or secrets).
    extras: dict[str, Any] = {"prometheus_url": settings.prometheus_url}
    if settings.prometheus_queries:
        extras["prometheus_queries"] = settings.prometheus_queries
    selector = {"app.kubernetes.io/name": GUARD_NAME}
    container = {
        "name": "guard",
        "image": image,
        "command": ["eas", "guard", "--identity", "$(POD_NAME)", "--leader-lease", GUARD_NAME],
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "EAS_KUBERNETES_EXTRAS", "value": json.dumps({k: v for k, v in extras.items() if v})},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "resources": {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**MANAGED, **selector}},
                "spec": {
                    "serviceAccountName": GUARD_NAME,
                    # SIGTERM gives the leader Lease back; a standby leads within a pass
                    "terminationGracePeriodSeconds": 10,
                    "containers": [container],
                },
            },
        },
    }
