"""Custom Python processors: a file, a folder, archives (local and over http), model_path archives."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from ._helpers import custom_spec, write_processor

ECHO = """
import json, os
from airflow_eas.serving import BaseProcessor
from helper import shout

class Proc(BaseProcessor):
    def initialize(self):
        path = self.get_model_path()
        self.model = open(os.path.join(path, "weights.txt")).read().strip() if path else "none"

    def process(self, data):
        return {"echo": shout(data.decode()), "model": self.model}, 200
"""
HELPER = "def shout(text):\n    return text.upper()\n"


def _folder(root: Path) -> Path:
    write_processor(root, ECHO)
    write_processor(root, HELPER, "helper.py")
    return root


def _model_dir(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "weights.txt").write_text("w-42\n")
    return root


def _tar(src: Path, dest: Path, top: str | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for p in sorted(src.iterdir()):
            tf.add(p, arcname=f"{top}/{p.name}" if top else p.name)
    return dest


@pytest.fixture
def http_root(tmp_path):
    """A local http.server on 127.0.0.1 serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _echo(server, text="hi"):
    status, body = server.post(text.encode(), path="/api/predict/custom")
    assert status == 200, body
    return json.loads(body)


def test_single_file_processor(serve, tmp_path):
    path = write_processor(tmp_path / "code", ECHO.replace("from helper import shout", "shout = str.upper"))
    server = serve(custom_spec("custom", path))
    assert _echo(server) == {"echo": "HI", "model": "none"}


def test_folder_processor_with_local_model_folder(serve, tmp_path):
    spec = custom_spec("custom", _folder(tmp_path / "code"), model_path=str(_model_dir(tmp_path / "model")))
    server = serve(spec)
    assert _echo(server, "abc") == {"echo": "ABC", "model": "w-42"}


def test_zip_processor_and_mounts(serve, tmp_path):
    code = _folder(tmp_path / "code")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in code.iterdir():
            zf.write(p, p.name)
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "proc.zip").write_bytes(buf.getvalue())
    env = {"EAS_MOUNTS": json.dumps({"/code": str(tmp_path / "mnt")})}
    server = serve(custom_spec("custom", "/code/proc.zip"), env=env)
    assert _echo(server)["echo"] == "HI"


def test_http_archives_for_processor_and_model(serve, tmp_path, http_root):
    www, base = http_root
    _tar(_folder(tmp_path / "code"), www / "proc.tar.gz", top="proc-1.0")  # one top-level folder
    _tar(_model_dir(tmp_path / "model"), www / "model.tar.gz")
    spec = custom_spec("custom", f"{base}/proc.tar.gz", model_path=f"{base}/model.tar.gz")
    server = serve(spec)
    assert _echo(server, "x") == {"echo": "X", "model": "w-42"}
    cached = list((tmp_path / "cache").rglob("weights.txt"))
    assert cached, "the model archive is unpacked into EAS_CACHE_DIR"


def test_http_model_archive_for_builtin(serve, tmp_path, http_root, sklearn_model):
    www, base = http_root
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(Path(sklearn_model).read_bytes())
    _tar(folder, www / "model.tar.gz")
    server = serve({"name": "iris", "processor": "sklearn", "model_path": f"{base}/model.tar.gz"})
    status, body = server.post({"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert status == 200
    assert json.loads(body)["predictions"] == [0]


def test_http_404_is_a_clear_failure(serve, http_root):
    _, base = http_root
    server = serve(custom_spec("custom", f"{base}/missing.tar.gz"), ready=False)
    assert server.wait_exit() != 0
    assert "answered 404" in server.stderr.strip().splitlines()[-1]


def test_initialize_error_exits_with_reason(serve, tmp_path):
    src = (
        "from airflow_eas.serving import BaseProcessor\nclass Proc(BaseProcessor):\n"
        "    def initialize(self):\n        raise RuntimeError('no GPU here')\n"
        "    def process(self, data):\n        return data, 200\n"
    )
    server = serve(custom_spec("custom", write_processor(tmp_path / "c", src)), ready=False)
    assert server.wait_exit() == 3
    last = server.stderr.strip().splitlines()[-1]
    assert last.startswith("airflow-eas serving: initialize failed: RuntimeError: no GPU here"), last


def test_wrong_mainclass(serve, tmp_path):
    server = serve(custom_spec("custom", _folder(tmp_path / "c"), mainclass="Nope"), ready=False)
    assert server.wait_exit() == 3
    assert "processor_mainclass 'Nope' is not a class in proc.py" in server.stderr
