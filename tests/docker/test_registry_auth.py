"""Private images: a real registry (Debian's docker-registry, htpasswd auth) on loopback.

An image pushed there deploys with the spec's dockerAuth, or with the login stored by
`eas registry login` (here through an `asset:` name); a wrong password fails the deploy
with the registry's own reason; the password shows up in no view and no log.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airflow_eas.server.embedded import free_port
from airflow_eas.spec import REDACTED, parse_spec
from tests.conftest import wait_running, wait_until
from tests.docker.conftest import BASE_IMAGE

pytestmark = pytest.mark.docker
USER, PASSWORD = "deployer", "Regi5try-pa55"
CONFIG = """version: 0.1
log: {{level: warn}}
storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}
http: {{addr: "127.0.0.1:{port}"}}
auth: {{htpasswd: {{realm: eas-test, path: {htpasswd}}}}}
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, docker_client, base_image: str) -> Iterator[str]:
    """host:port of a running registry that holds BASE_IMAGE as <registry>/eas-test/app:1 (not on the engine)."""
    binary, htpasswd = shutil.which("docker-registry"), shutil.which("htpasswd")
    if not binary or not htpasswd:
        pytest.skip("needs Debian's docker-registry and apache2-utils (make docker installs them)")
    root = tmp_path_factory.mktemp("registry")
    users = subprocess.run([htpasswd, "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True).stdout
    (root / "htpasswd").write_text(users)
    port = free_port()
    (root / "config.yml").write_text(CONFIG.format(root=root / "data", port=port, htpasswd=root / "htpasswd"))
    with open(root / "registry.log", "wb") as log:
        proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=log, stderr=log)
    host = f"127.0.0.1:{port}"

    def answers() -> bool:
        assert proc.poll() is None, (root / "registry.log").read_text()[-2000:]
        try:
            return requests.get(f"http://{host}/v2/", timeout=2).status_code == 401
        except requests.RequestException:
            return False

    try:
        wait_until(answers, 20, "the registry to answer")
        repo = f"{host}/eas-test/app"
        docker_client.images.get(BASE_IMAGE).tag(repo, "1")
        for line in docker_client.images.push(repo, "1", auth_config={"username": USER, "password": PASSWORD},
                                              stream=True, decode=True):
            assert "error" not in line, line
        docker_client.images.remove(f"{repo}:1")  # only the tag: the deploys below must pull it
        yield host
    finally:
        proc.terminate()
        proc.wait(10)
        for tagged in docker_client.images.list(name=f"{host}/eas-test/app"):
            for tag in tagged.tags:
                docker_client.images.remove(tag, force=True)


def _spec(name: str, image: str, auth: str | None = None) -> dict:
    spec: dict = {"name": name, "containers": [{"image": image, "port": 8000,
                                                "command": "python3 -m http.server 8000 --directory /etc"}]}
    if auth:
        spec["dockerAuth"] = base64.b64encode(auth.encode()).decode()
    return spec


def _untag(docker_client, image: str) -> None:
    try:
        docker_client.images.remove(image, force=True)  # a running container keeps its layers
    except Exception:  # noqa: BLE001 - not there: nothing to untag
        pass


def test_private_image_with_docker_auth_and_stored_login(docker_server, docker_client, registry: str) -> None:
    client = docker_server.client
    image = f"{registry}/eas-test/app:1"

    client.create(parse_spec(_spec("priv_wrong", image, f"{USER}:not-the-password")))
    info = wait_until(lambda: (i := client.describe("priv_wrong")).status == "Failed" and i, 90, "Failed")
    assert "pulling it failed" in info.reason, info.reason
    assert "unauthorized" in info.reason.lower(), info.reason
    client.delete("priv_wrong")

    client.create(parse_spec(_spec("priv_auth", image, f"{USER}:{PASSWORD}")))
    info = wait_running(client, "priv_auth", 1, timeout=90)
    resp = requests.get(f"{info.endpoint}/os-release", headers={"Authorization": info.token}, timeout=5)
    assert resp.status_code == 200
    assert "bookworm" in resp.text
    assert info.spec["dockerAuth"] == REDACTED
    shown = repr(info.to_dict()) + client.logs("priv_auth") + repr([s.to_dict() for s in client.list()])
    assert PASSWORD not in shown
    assert info.to_dict().get("dockerAuth") is None
    client.delete("priv_auth")
    _untag(docker_client, image)

    # the server's own login for the registry, the image named by an asset: no credentials in the spec
    api = client._call
    api("PUT", f"/api/v2/registries/{registry}", json={"username": USER, "password": PASSWORD})
    assert api("GET", "/api/v2/registries")["registries"] == [{"registry": registry, "username": USER}]
    api("POST", "/api/v2/assets", json={"name": "private_app", "type": "image", "uri": image})
    client.create(parse_spec(_spec("priv_stored", "asset:private_app")))
    info = wait_running(client, "priv_stored", 1, timeout=90)
    assert requests.get(f"{info.endpoint}/hostname", headers={"Authorization": info.token}, timeout=5).ok
    client.delete("priv_stored")
    api("DELETE", f"/api/v2/registries/{registry}")
    _untag(docker_client, image)

    data = Path(docker_server.data_dir)
    assert (data / "registries.json").stat().st_mode & 0o077 == 0
    for log in [*data.glob("logs/**/*.log"), *data.glob("*.log")]:
        assert PASSWORD not in log.read_text(errors="replace"), log
