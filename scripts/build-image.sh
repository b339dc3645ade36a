#!/usr/bin/env bash
# Build the docker runtime's images offline, skipping what is already built.
#
#   scripts/build-image.sh base          airflow-eas/base:bookworm: a debootstrap rootfs
#                                        (python3-minimal, python3-venv), docker-imported
#   scripts/build-image.sh model-server  airflow-eas/model-server:latest: this package and the
#                                        model server's dependencies from a host-built wheelhouse
#   scripts/build-image.sh [all]         both
#
# The base is built once (it only depends on Debian). The model server is rebuilt only
# when the source it runs changed (serving/, spec.py, errors.py, pyproject.toml, these
# build files): the image carries a hash of it (label eas.source).
# Env: EAS_BASE_IMAGE, EAS_MODEL_SERVER_IMAGE, EAS_DEBIAN_MIRROR, PY (python with pip).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=${EAS_BASE_IMAGE:-airflow-eas/base:bookworm}
IMAGE=${EAS_MODEL_SERVER_IMAGE:-airflow-eas/model-server:latest}
MIRROR=${EAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PY:-$ROOT/.venv/bin/python}
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin needed

say() { echo "build-image: $*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
  if exists "$BASE"; then say "$BASE exists"; return; fi
  if ! command -v debootstrap >/dev/null; then
    say "installing debootstrap with apt-get"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; } >/dev/null
  fi
  local rootfs start=$SECONDS
  rootfs=$(mktemp -d /var/tmp/eas-rootfs.XXXXXX)
  trap 'rm -rf "$rootfs"' RETURN
  say "debootstrap bookworm into $rootfs (from $MIRROR)"
  if ! debootstrap --variant=minbase --include=python3-minimal,python3-venv bookworm "$rootfs" "$MIRROR" \
      >"$rootfs.log" 2>&1; then
    tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; say "debootstrap failed"; return 1
  fi
  rm -f "$rootfs.log"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["python3"]' - "$BASE" >/dev/null
  say "$BASE built in $((SECONDS - start)) s"
}

# what the model server runs: a change anywhere else in the package does not rebuild the image
source_hash() {
  (cd "$ROOT" && find airflow_eas/serving airflow_eas/__init__.py airflow_eas/spec.py airflow_eas/errors.py \
    -name '*.py' | LC_ALL=C sort | xargs cat pyproject.toml airflow_eas/server/image/Dockerfile \
    airflow_eas/server/image/requirements.txt) | sha256sum | cut -c1-16
}

build_model_server() {
  local want have ctx start=$SECONDS
  want=$(source_hash)
  have=$(docker image inspect -f '{{ index .Config.Labels "eas.source" }}' "$IMAGE" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then say "$IMAGE is up to date (source $want)"; return; fi
  build_base
  ctx=$(mktemp -d /var/tmp/eas-image.XXXXXX)
  trap 'rm -rf "$ctx"' RETURN
  cp "$ROOT"/airflow_eas/server/image/{Dockerfile,requirements.txt} "$ctx"/
  say "wheelhouse (this package --no-deps, model-server requirements pinned like $PY's venv)"
  "$PY" -m pip freeze --exclude-editable >"$ctx/constraints.txt"
  "$PY" -m pip wheel -q --no-deps -w "$ctx/wheels" "$ROOT"
  "$PY" -m pip download -q --only-binary=:all: -d "$ctx/wheels" -c "$ctx/constraints.txt" \
    -r "$ctx/requirements.txt"
  say "docker build $IMAGE"
  docker build -q --network host --build-arg BASE="$BASE" --label eas.source="$want" -t "$IMAGE" "$ctx" >/dev/null
  docker image prune -f --filter label=eas.source >/dev/null  # the build it replaced
  say "$IMAGE built in $((SECONDS - start)) s (source $want)"
}

case "${1:-all}" in
  base) build_base ;;
  model-server) build_model_server ;;
  all) build_base; build_model_server ;;
  *) echo "usage: $0 [base|model-server|all]" >&2; exit 2 ;;
esac
