"""Templates, static files and view logic of the Airflow UI plugin (airflow_eas.plugin)."""
