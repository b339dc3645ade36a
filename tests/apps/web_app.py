"""A FastAPI web app deployed by image, as users deploy Gradio/FastAPI/Flask apps: served on $PORT
under the gateway's path prefix (env EAS_ROOT_PATH)."""

import os

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI()


@app.get("/", response_class=HTMLResponse)
def home() -> str:
    return "<html><body><h1>fraud model playground</h1><a href='predict'>predict</a></body></html>"


@app.post("/predict")
def predict(row: dict) -> dict:
    return {"score": sum(row.get("features", []))}


if __name__ == "__main__":
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]),
                root_path=os.environ.get("EAS_ROOT_PATH", ""),
                log_level="warning")
