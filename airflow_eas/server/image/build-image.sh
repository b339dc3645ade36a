#!/usr/bin/env bash
# Build the docker runtime's images offline, skipping what is already built. Ships in the
# package (airflow_eas/server/image/), so a pip-installed server builds its images too.
#
#   build-image.sh base               airflow-eas/base:bookworm: a debootstrap rootfs
#                                     (python3-minimal, python3-venv), docker-imported
#   build-image.sh model-server       airflow-eas/model-server: the model server with the
#                                     sklearn, xgboost, lightgbm and onnx processors
#   build-image.sh model-server-pmml  airflow-eas/model-server-pmml: the above + Java + pypmml
#   build-image.sh web-demo           airflow-eas/web-demo:latest: a FastAPI app (web-demo.json)
#   build-image.sh airflow            airflow-eas/airflow:latest: Airflow + this package (compose;
#                                     needs the source checkout: it builds this package's wheel)
#   build-image.sh postgres           airflow-eas/postgres:15: Debian's PostgreSQL (compose)
#   build-image.sh tag                print the model server's source tag (builds nothing)
#   build-image.sh [all]              every one of them
#
# The base is built once (it only depends on Debian). The model server images are rebuilt
# only when what they run changed (serving/, spec.py, errors.py, this folder): each is
# tagged :latest and :src-<hash of that source>. The hash tag pins what a test or a
# deployment runs while other checkouts rebuild :latest on the same engine.
# Pip reads wheels from a wheelhouse made on the host (pinned like PY's environment);
# apt inside the build fetches libgomp1 and, for PMML, a Java runtime from Debian.
# Env: EAS_BASE_IMAGE, EAS_MODEL_SERVER_REPO, EAS_DEBIAN_MIRROR, PY (python with pip).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PKG=$(cd "$HERE/../.." && pwd)               # the airflow_eas package the images run
ROOT=$(cd "$PKG/.." && pwd)
BASE=${EAS_BASE_IMAGE:-airflow-eas/base:bookworm}
REPO=${EAS_MODEL_SERVER_REPO:-airflow-eas/model-server}
WEB_DEMO=airflow-eas/web-demo:latest
MIRROR=${EAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -z "${PY:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python; else PY=$(command -v python3); fi
fi
export DOCKER_BUILDKIT=0  # the classic builder: no buildx plugin needed

say() { echo "build-image: $*" >&2; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }

build_base() {
  if exists "$BASE"; then say "$BASE exists"; return; fi
  if ! command -v debootstrap >/dev/null; then
    say "debootstrap is not installed: it builds $BASE once (Debian: apt-get install debootstrap)"; return 1
  fi
  local rootfs start=$SECONDS
  rootfs=$(mktemp -d /var/tmp/eas-rootfs.XXXXXX)
  trap 'rm -rf "${rootfs:-}"; trap - RETURN' RETURN
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
  (cd "$PKG" && { find serving __init__.py spec.py errors.py -name '*.py' | LC_ALL=C sort;
                  ls server/image/Dockerfile server/image/Dockerfile.pmml server/image/requirements*.txt; } \
    | xargs cat) | sha256sum | cut -c1-16
}

# a build context: the Dockerfile, its requirements and their wheels pinned like PY's environment
context() {  # context DIR DOCKERFILE REQUIREMENTS...
  local ctx=$1 dockerfile=$2
  shift 2
  cp "$HERE/$dockerfile" "$ctx/Dockerfile"
  "$PY" -m pip freeze --exclude-editable | grep -v '^-e ' >"$ctx/constraints.txt" || true
  for req in "$@"; do
    cp "$HERE/$req" "$ctx/"
    "$PY" -m pip download -q --only-binary=:all: -d "$ctx/wheels" -c "$ctx/constraints.txt" -r "$HERE/$req"
  done
}

build_tagged() {  # build_tagged IMAGE_REPO DOCKERFILE REQUIREMENTS [BUILD_ARG]
  local repo=$1 dockerfile=$2 req=$3 arg=${4:-} hash ctx start=$SECONDS
  hash=$(source_hash)
  if exists "$repo:src-$hash"; then
    docker tag "$repo:src-$hash" "$repo:latest"
    say "$repo:src-$hash is up to date"; return
  fi
  ctx=$(mktemp -d /var/tmp/eas-image.XXXXXX)
  trap 'rm -rf "${ctx:-}"; trap - RETURN' RETURN
  context "$ctx" "$dockerfile" "$req"
  if [ "$dockerfile" = Dockerfile ]; then
    (cd "$PKG/.." && tar --exclude=__pycache__ -c airflow_eas) | tar -C "$ctx" -x
  fi
  say "docker build $repo:src-$hash"
  docker build -q --network host --build-arg BASE="$BASE" ${arg:+--build-arg "$arg"} \
    --label eas.source="$hash" -t "$repo:src-$hash" -t "$repo:latest" "$ctx" >/dev/null
  say "$repo:src-$hash built in $((SECONDS - start)) s"
}

build_model_server() {
  build_base
  build_tagged "$REPO" Dockerfile requirements.txt
}

build_model_server_pmml() {
  build_model_server
  build_tagged "$REPO-pmml" Dockerfile.pmml requirements-pmml.txt "MODEL_SERVER=$REPO:src-$(source_hash)"
}

build_web_demo() {
  build_base
  local want have ctx start=$SECONDS
  want=$(cat "$HERE/Dockerfile.web-demo" "$HERE/web_demo.py" "$HERE/requirements-web-demo.txt" | sha256sum | cut -c1-16)
  have=$(docker image inspect -f '{{ index .Config.Labels "eas.source" }}' "$WEB_DEMO" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then say "$WEB_DEMO is up to date"; return; fi
  ctx=$(mktemp -d /var/tmp/eas-image.XXXXXX)
  trap 'rm -rf "${ctx:-}"; trap - RETURN' RETURN
  context "$ctx" Dockerfile.web-demo requirements-web-demo.txt
  cp "$HERE/web_demo.py" "$ctx/"
  docker build -q --network host --build-arg BASE="$BASE" --label eas.source="$want" -t "$WEB_DEMO" "$ctx" >/dev/null
  say "$WEB_DEMO built in $((SECONDS - start)) s"
}

# rebuilt when its inputs change: build_labelled IMAGE HASH DOCKERFILE FILES... (files copied into the context)
build_labelled() {
  local image=$1 want=$2 dockerfile=$3 have ctx start=$SECONDS
  shift 3
  have=$(docker image inspect -f '{{ index .Config.Labels "eas.source" }}' "$image" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then say "$image is up to date"; return; fi
  ctx=$(mktemp -d /var/tmp/eas-image.XXXXXX)
  trap 'rm -rf "${ctx:-}"; trap - RETURN' RETURN
  cp "$HERE/$dockerfile" "$ctx/Dockerfile"
  for f in "$@"; do cp -r "$f" "$ctx/"; done
  if [ -n "${WHEELHOUSE:-}" ]; then mv "$WHEELHOUSE" "$ctx/wheels"; fi
  docker build -q --network host --build-arg BASE="$BASE" --label eas.source="$want" -t "$image" "$ctx" >/dev/null
  say "$image built in $((SECONDS - start)) s"
}

build_postgres() {
  build_base
  build_labelled airflow-eas/postgres:15 "$(cat "$HERE/Dockerfile.postgres" "$HERE/postgres-entrypoint.sh" \
    | sha256sum | cut -c1-16)" Dockerfile.postgres "$HERE/postgres-entrypoint.sh"
}

build_airflow() {
  build_base
  [ -f "$ROOT/pyproject.toml" ] || { say "the airflow image needs the source checkout (pyproject.toml)"; return 1; }
  local want tmp
  want=$( (cd "$ROOT" && git ls-files -z -- pyproject.toml airflow_eas | xargs -0 cat) | sha256sum | cut -c1-16)
  if [ "$(docker image inspect -f '{{ index .Config.Labels "eas.source" }}' airflow-eas/airflow:latest \
        2>/dev/null || true)" = "$want" ]; then say "airflow-eas/airflow:latest is up to date"; return; fi
  tmp=$(mktemp -d /var/tmp/eas-airflow.XXXXXX)
  # a copy of the tracked files: building in place leaves build/ and *.egg-info in the checkout
  (cd "$ROOT" && git ls-files -z -- pyproject.toml README.md LICENSE airflow_eas | xargs -0 cp --parents -t "$tmp")
  mkdir "$tmp/wheels"
  "$PY" -m pip wheel -q --no-deps -w "$tmp/wheels" "$tmp"
  "$PY" -m pip freeze --exclude-editable | grep -v '^-e ' >"$tmp/constraints.txt" || true
  "$PY" -m pip download -q --only-binary=:all: -d "$tmp/wheels" -c "$tmp/constraints.txt" \
    "$(ls "$tmp"/wheels/airflow_eas-*.whl)[provider,server,serving,sklearn]" psycopg2-binary asyncpg
  WHEELHOUSE=$tmp/wheels build_labelled airflow-eas/airflow:latest "$want" Dockerfile.airflow
  rm -rf "$tmp"
}

case "${1:-all}" in
  base) build_base ;;
  model-server) build_model_server ;;
  model-server-pmml) build_model_server_pmml ;;
  web-demo) build_web_demo ;;
  airflow) build_airflow ;;
  postgres) build_postgres ;;
  tag) echo "src-$(source_hash)" ;;
  all) build_model_server_pmml; build_web_demo ;;
  compose) build_model_server; build_postgres; build_airflow ;;
  *) echo "usage: $0 [base|model-server|model-server-pmml|web-demo|airflow|postgres|compose|tag|all]" >&2; exit 2 ;;
esac
