"""Nightly blue/green release of the fraud model, DataWorks style.

Every night at 02:00 (Asia/Shanghai) the model trained for the business date
(``{{ bizdate }}``, the day before) is deployed to the idle member of group ``fraud``,
warmed up, given all traffic, checked for a minute and promoted; any failure sends
the traffic back to the previous member. Trigger it from the UI with a ``version`` or a
``model_path`` to release a specific model.
"""

from airflow_eas.dags import build_rollout_dag

dag = build_rollout_dag(
    {
        "dag_id": "eas_nightly_blue_green",
        "group": "fraud",
        "eas_conn_id": "eas_default",
        "schedule": {"cron": "0 2 * * *", "timezone": "Asia/Shanghai", "start_date": "2026-11-01"},
        "params": {"version": "daily"},
        "service": {
            "processor": "sklearn",
            "model_path": "file:///models/fraud/{{ bizdate }}/model.joblib",
            "metadata": {"instance": 2, "rpc": {"batching": True, "max_batch_size": 16}},
        },
        "warmup": {"data_path": "file:///models/fraud/warmup.jsonl", "count": 3},
        "strategy": "blue_green",
        "bake_seconds": 60,
        "analysis": {"window_seconds": 60, "min_requests": 100, "max_error_rate": 0.01, "max_p99_ms": 300},
        "scale_down_delay_seconds": 300,
    }
)
