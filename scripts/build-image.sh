#!/usr/bin/env bash
# `make image` and the docker tests call this; the script itself ships in the package (server/image/).
exec "$(dirname "$0")/../airflow_eas/server/image/build-image.sh" "$@"
