"""Pruning the model-server images that ``eas image build`` tags by source (``<repo>:src-<hash>``).

Each change of the model server's source gets a new ``:src-<hash>`` tag (the hash pins what a server
runs while another build moves ``:latest``), so old ones pile up at about 1 GB each. A tag is pruned
when nothing can need it any more:

- no container on the engine, of any server or state, runs its image (the engine would refuse anyway);
- this server neither runs it nor names it: not its model-server image (nor that image's ``-pmml``
  variant), not the image of any stored service (a stopped one included), not an image asset;
- the image carries no other tag (``:latest`` marks the newest build);
- it was built more than ``min_age`` seconds ago: a fresh build may be about to be used by a server
  that has not started yet (another checkout or server on the same engine).

Only the repositories of this server's model-server image are looked at: images of other
repositories are the user's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from docker.errors import APIError, DockerException, ImageNotFound

log = logging.getLogger("airflow_eas.server")

SOURCE_TAG = ":src-"


def split_tag(image: str) -> tuple[str, str]:
    """``airflow-eas/model-server:src-1a`` -> (``airflow-eas/model-server``, ``src-1a``); no tag is ``latest``
    (a registry's port is no tag; a digest is dropped)."""
    name = image.partition("@")[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return name, "latest"
    return repo, tag


def prune_source_tags(api: Any, repos: Iterable[str], keep: Iterable[str], *, min_age: float) -> list[str]:
    """Remove the ``:src-*`` tags of ``repos`` that nothing needs (module docstring); return the tags removed."""
    try:
        held = {c["ImageID"] for c in api.containers(all=True)} | _ids(api, keep)
        images = [img for repo in set(repos) for img in api.images(name=repo)]
    except (APIError, DockerException, OSError) as exc:
        log.warning("image pruning skipped: the engine did not list containers or images (%s)", exc)
        return []
    cutoff = time.time() - min_age
    removed = []
    for img in images:
        tags = img.get("RepoTags") or []
        if img["Id"] in held or img.get("Created", 0) > cutoff or any(SOURCE_TAG not in t for t in tags):
            continue
        for tag in tags:
            try:
                api.remove_image(tag)
            except (APIError, DockerException) as exc:  # e.g. a container was created from it just now
                log.info("kept image %s: %s", tag, exc)
                continue
            removed.append(tag)
    if removed:
        log.info("pruned unused model-server images: %s", ", ".join(removed))
    return removed


def _ids(api: Any, images: Iterable[str]) -> set[str]:
    ids = set()
    for image in set(images):
        try:
            ids.add(api.inspect_image(image)["Id"])
        except (ImageNotFound, APIError):
            pass  # not on this engine (or no valid reference): nothing to keep
    return ids
