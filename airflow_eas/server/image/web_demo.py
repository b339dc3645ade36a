"""The prebuilt web-app demo (image airflow-eas/web-demo): a FastAPI page and a JSON scoring route.

Listens on 0.0.0.0:8000 whatever the platform sets, as an off-the-shelf image would.
"""

import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI(title="airflow-eas web demo")


@app.get("/", response_class=HTMLResponse)
def home() -> str:
    return ("<html><body><h1>airflow-eas web demo</h1>"
            "<p>POST {\"features\": [..]} to <a href='score'>score</a>.</p></body></html>")


@app.post("/score")
def score(row: dict) -> dict:
    features = [float(x) for x in row.get("features", [])]
    return {"score": sum(features), "n": len(features)}


@app.get("/healthz")
def healthz() -> dict:
    return {"ok": True}


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=8000, root_path=os.environ.get("EAS_ROOT_PATH", ""), log_level="warning")
