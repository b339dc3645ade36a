"""Provider metadata read by Airflow's providers manager (``airflow providers list``).

Connection form fields are declared here (Airflow 3.2+ reads ``conn-fields`` and
``ui-field-behaviour`` without importing the hook); :class:`~airflow_eas.hooks.eas.EasHook`
keeps the older hook methods for Airflow versions that still call them.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

EAS_CONN_FIELDS: dict[str, Any] = {
    "timeout": {
        "label": "Request timeout (s)",
        "description": "Seconds to wait for any one call to the eas server control plane.",
        "schema": {"type": ["integer", "null"], "default": 30},
    },
    "console_url": {
        "label": "Console URL template",
        "description": "URL of a service's console page; {service} and {endpoint} are filled in.",
        "schema": {"type": ["string", "null"]},
    },
}

EAS_UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["login", "extra"],
    "relabeling": {"host": "eas server host", "password": "Admin token", "schema": "Scheme (http/https)"},
    "placeholders": {
        "host": "127.0.0.1",
        "port": "8600",
        "schema": "http",
        "password": "contents of DATA_DIR/admin_token",
    },
}


def get_provider_info() -> dict[str, Any]:
    try:
        version = importlib.metadata.version("airflow-eas")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0"
    return {
        "package-name": "airflow-eas",
        "name": "EAS (Elastic Algorithm Service)",
        "description": "Deploy, warm up, health-check and promote model services on an EAS-style platform.",
        "versions": [version],
        "integrations": [
            {
                "integration-name": "EAS",
                "external-doc-url": "https://www.alibabacloud.com/help/en/pai/user-guide/eas-model-serving",
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": "EAS", "python-modules": ["airflow_eas.hooks.eas"]}],
        "operators": [
            {
                "integration-name": "EAS",
                "python-modules": [
                    "airflow_eas.operators.deploy",
                    "airflow_eas.operators.traffic",
                    "airflow_eas.operators.service",
                    "airflow_eas.operators.lease",
                ],
            }
        ],
        "sensors": [{"integration-name": "EAS", "python-modules": ["airflow_eas.sensors.eas"]}],
        "triggers": [{"integration-name": "EAS", "python-modules": ["airflow_eas.triggers.eas"]}],
        "connection-types": [
            {
                "connection-type": "eas",
                "hook-class-name": "airflow_eas.hooks.eas.EasHook",
                "hook-name": "EAS",
                "conn-fields": EAS_CONN_FIELDS,
                "ui-field-behaviour": EAS_UI_FIELD_BEHAVIOUR,
            }
        ],
        "extra-links": [
            "airflow_eas.links.EasServiceEndpointLink",
            "airflow_eas.links.EasServiceConsoleLink",
        ],
        "plugins": [{"name": "eas", "plugin-class": "airflow_eas.plugin.EasPlugin"}],
    }
