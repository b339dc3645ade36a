"""Scale or delete one service."""

from __future__ import annotations

from typing import Any

from airflow_eas.errors import NotFound
from airflow_eas.operators.base import EasBaseOperator, eas_template_fields


class EasScaleOperator(EasBaseOperator):
    """Set a service's instance count.

    :param service: the service; templated
    :param instances: the instance count; templated
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("service", "instances")

    def __init__(self, *, service: str, instances: int | str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.instances = instances

    def execute(self, context: Any) -> dict[str, Any]:
        info = self.platform.scale(self.service, int(self.instances))
        return {"service": info.name, "instances": info.instances, "status": info.status}


class EasDeleteServiceOperator(EasBaseOperator):
    """Delete a service.

    :param service: the service; templated
    :param ignore_missing: succeed when the service does not exist (default True)
    :param eas_conn_id: the Airflow connection of the platform
    """

    template_fields = eas_template_fields("service")

    def __init__(self, *, service: str, ignore_missing: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.ignore_missing = ignore_missing

    def execute(self, context: Any) -> None:
        try:
            self.platform.delete(self.service)
        except NotFound:
            if not self.ignore_missing:
                raise
            self.log.info("%s does not exist: nothing to delete", self.service)
