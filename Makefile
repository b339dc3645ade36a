# airflow-eas: every target sets itself up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench deps system clean docker image

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

deps: $(STAMP)

# Debian packages the platform and its tests use, as command:package, installed where the command is missing:
# HAProxy (the gateway), wrk (load tests, benchmarks), Chromium (the console's browser tests), Prometheus and
# promtool (metrics tests, the /metrics exposition check), nginx (the gateway benchmark's tiny upstream), a Java
# runtime (the pmml processor).
SYSTEM_TOOLS := haproxy:haproxy wrk:wrk chromium:chromium prometheus:prometheus promtool:prometheus nginx:nginx-light \
  java:openjdk-17-jre-headless
system:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing with apt-get"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# A Docker engine for the docker runtime (installs docker.io, starts dockerd where none answers).
# Never fails: without an engine the docker tests skip and say why.
# Also a registry (docker-registry, htpasswd from apache2-utils) for the private-image tests and
# Debian's docker-compose (1.29) for the compose test, and debootstrap, which `eas image build` makes the base image with.
docker:
	@scripts/ensure-dockerd.sh || echo "no Docker engine here: the docker runtime's tests will skip"
	@command -v docker-registry >/dev/null && command -v htpasswd >/dev/null && command -v docker-compose >/dev/null \
	  && command -v debootstrap >/dev/null \
	  || { echo "installing docker-registry, apache2-utils, docker-compose and debootstrap with apt-get"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils \
	    docker-compose debootstrap; } >/dev/null || echo "not installed: the registry, compose and image tests will skip"; }

# The docker runtime's images, built offline and skipped when up to date, by `eas image build` (as a
# pip-installed server builds them, from airflow_eas/server/image/): airflow-eas/base:bookworm (debootstrap),
# airflow-eas/model-server (sklearn, xgboost, lightgbm, onnx), airflow-eas/model-server-pmml (+ Java, pypmml),
# airflow-eas/web-demo (a FastAPI app), and the compose stack's postgres and airflow images.
image: deps docker
	$(VENV)/bin/eas image build all compose

demo: system deps
	$(PY) -m airflow_eas.demo

test: system deps docker
	$(VENV)/bin/ruff check airflow_eas tests dags bench
	$(VENV)/bin/pytest -q

lint: deps
	$(VENV)/bin/ruff check airflow_eas tests dags bench

bench: system deps
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .demo .bench
