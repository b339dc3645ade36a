"""Deploy when training publishes a model: the rollout is scheduled on an Asset.

The training DAG declares ``outlets=[Asset("file:///models/churn/latest")]`` and
attaches the new model's location to the asset event:
``outlet_events[asset].extra = {"model_path": "file:///models/churn/2026-11-24/model.joblib"}``.
Each such event starts this DAG; the deploy task takes ``model_path`` from the event
(else the plan's ``model_path``).
"""

from airflow_eas.dags import build_rollout_dag

dag = build_rollout_dag(
    {
        "dag_id": "eas_asset_release",
        "group": "churn",
        "schedule": {"asset": "file:///models/churn/latest"},
        "service": {
            "processor": "sklearn",
            "model_path": "file:///models/churn/latest/model.joblib",
            "metadata": {"instance": 1},
        },
        "warmup": {"data_path": "file:///models/churn/warmup.jsonl", "count": 3},
        "strategy": "canary",
        "steps": [20, 100],
        "bake_seconds": 60,
        "analysis": {
            "window_seconds": 60,
            "min_requests": 50,
            "max_error_rate": 0.01,
            "baseline_tolerance": 2.0,
        },
        "scale_down_delay_seconds": 300,
    }
)
