"""The baseline of the model-server benchmark: a bare uvicorn + starlette handler calling model.predict.

``python -m bench.serving_bare MODEL.joblib PORT`` (uvloop + httptools, one worker, no access log).
"""

from __future__ import annotations

import sys

import joblib
import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def build(model_path: str) -> Starlette:
    model = joblib.load(model_path)

    async def predict(request: Request) -> JSONResponse:
        doc = await request.json()
        return JSONResponse(
            {"predictions": model.predict(np.asarray(doc["instances"], dtype=float)).tolist()}
        )

    return Starlette(routes=[Route("/", predict, methods=["POST"])])


if __name__ == "__main__":
    uvicorn.run(
        build(sys.argv[1]),
        host="127.0.0.1",
        port=int(sys.argv[2]),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
