"""The API of images and data kept by the server: registry logins and assets.

``/api/v2/registries``: ``GET`` lists the registries with a stored login (user names only);
``PUT /api/v2/registries/{registry}`` stores one (``{"username", "password"}`` or EAS's
``{"dockerAuth": base64}``); ``DELETE`` forgets it. ``/api/v2/assets``: ``POST`` creates,
``GET`` lists, ``GET|PUT|DELETE /api/v2/assets/{name}`` describes, updates, deletes (409,
naming the services, while any spec refers to it). Mounted under the admin token by app.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Response

from airflow_eas.errors import InvalidSpec
from airflow_eas.server.assets import Assets
from airflow_eas.server.registries import RegistryCredentials
from airflow_eas.server.store import Store
from airflow_eas.spec import docker_auth_pair


def image_router(store: Store, credentials: RegistryCredentials) -> APIRouter:
    router = APIRouter()
    assets = Assets(store)

    @router.get("/registries")
    def list_registries() -> dict:
        return {"registries": credentials.list()}

    @router.put("/registries/{registry}")
    def set_registry_login(registry: str, body: dict = Body(...)) -> dict:
        if body.get("dockerAuth"):
            try:
                username, password = docker_auth_pair(str(body["dockerAuth"]))
            except ValueError as exc:
                raise InvalidSpec(f"dockerAuth: {exc}") from None
        else:
            username, password = str(body.get("username") or ""), str(body.get("password") or "")
        return credentials.set(registry, username, password)

    @router.delete("/registries/{registry}", status_code=204)
    def forget_registry_login(registry: str) -> Response:
        credentials.remove(registry)
        return Response(status_code=204)

    @router.post("/assets", status_code=201)
    def create_asset(body: Any = Body(...)) -> dict:
        return assets.create(body)

    @router.get("/assets")
    def list_assets() -> dict:
        return {"assets": assets.list()}

    @router.get("/assets/{name}")
    def describe_asset(name: str) -> dict:
        return assets.describe(name)

    @router.put("/assets/{name}")
    def update_asset(name: str, body: dict = Body(...)) -> dict:
        return assets.update(name, body)

    @router.delete("/assets/{name}", status_code=204)
    def delete_asset(name: str) -> Response:
        assets.delete(name)
        return Response(status_code=204)

    return router
