"""A service that tries to look at another service's instance, then answers on $PORT with what it saw.

Env: PROBES (JSON list of paths: files are read, folders listed), OTHER_PID (a process to signal),
MODEL_FILE (a file under the mount /models that must be readable). The answer maps each probe to
"read" or "denied", and says what the service could do with its own files.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


def probe(path: str) -> str:
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except PermissionError:
        return "denied"
    except OSError as exc:
        return f"error {exc.errno}"
    return "read"


def look() -> dict:
    seen = {"uid": os.getuid(), "probes": {path: probe(path) for path in json.loads(os.environ["PROBES"])}}
    try:
        os.kill(int(os.environ["OTHER_PID"]), 0)
        seen["signal"] = "sent"
    except PermissionError:
        seen["signal"] = "denied"
    mounts = json.loads(os.environ["EAS_MOUNTS"])
    with open(os.path.join(mounts["/models"], os.environ["MODEL_FILE"])) as f:
        seen["model"] = f.read()
    with open("spec.json") as f:
        seen["own_spec"] = json.load(f)["name"]
    with open(os.path.join(os.environ["EAS_CACHE_DIR"], "scratch"), "w") as f:
        seen["own_cache"] = f.write("written")
    return seen


BODY = json.dumps(look()).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args) -> None:
        pass


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
