"""The model server for processor deployments (built-in and custom Python processors).

Run once per instance: ``python -m airflow_eas.serving --spec SPEC.json [--port P]``.
Custom processors subclass :class:`BaseProcessor`; importing it pulls in nothing heavy.
"""

from airflow_eas.serving.processor import BaseProcessor

__all__ = ["BaseProcessor"]
