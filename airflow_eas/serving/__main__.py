"""``python -m airflow_eas.serving --spec SPEC.json [--port P]``: one model server instance.

Exit codes: 0 stopped normally after being ready; 1 could not serve (port, signal before
ready, unexpected error); 2 bad arguments, spec or environment; 3 the processor failed to
load or initialize; 4 warm-up failed. The last stderr line always says why.
"""

from __future__ import annotations

import argparse
import os
import sys

from airflow_eas.serving.processor import StartupError
from airflow_eas.serving.server import log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_eas.serving", description="airflow-eas model server"
    )
    parser.add_argument("--spec", required=True, help="the service's full ServiceSpec JSON file")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default: env PORT)")
    parser.add_argument(
        "--host",
        default=os.environ.get("HOST", "127.0.0.1"),
        help="address to bind (default: env HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--execution",
        choices=("auto", "inline", "threads"),
        default=os.environ.get("EAS_SERVING_EXECUTION", "auto"),
        help="where model calls run (default auto: built-ins inline while fast, custom on threads)",
    )
    args = parser.parse_args(argv)
    try:
        port = args.port if args.port is not None else _env_port()
        from airflow_eas.errors import EasError
        from airflow_eas.spec import load_spec_file

        try:
            spec = load_spec_file(args.spec)
        except EasError as exc:
            raise StartupError(exc.message, 2) from None
        if spec.kind == "image":
            raise StartupError(
                f"service {spec.name} is deployed by image; the model server runs processors only", 2
            )
    except StartupError as exc:
        log(exc.message)
        return exc.exit_code

    import asyncio

    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it; plain asyncio still works
        return asyncio.run(_serve(spec, args.host, port, args.execution))
    return uvloop.run(_serve(spec, args.host, port, args.execution))


async def _serve(spec, host: str, port: int, execution: str) -> int:
    from airflow_eas.serving.server import serve

    return await serve(spec, host, port, execution)


def _env_port() -> int:
    raw = os.environ.get("PORT")
    if not raw:
        raise StartupError("no port: give --port or set PORT", 2)
    try:
        return int(raw)
    except ValueError:
        raise StartupError(f"PORT={raw!r} is not a port number", 2) from None


if __name__ == "__main__":
    sys.exit(main())
