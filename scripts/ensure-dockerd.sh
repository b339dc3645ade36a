#!/usr/bin/env bash
# Make a Docker engine answer on this machine, for the docker runtime and its tests.
#
# Installs docker.io (Debian) where dockerd is missing, starts dockerd in the
# background where `docker info` fails (no systemd needed: host networking only,
# no bridge, no iptables), and waits until it answers. Exit 0 when the engine
# answers, 1 (with the reason on stderr) when it cannot be had.
#
# Env: EAS_DOCKERD_DATA_ROOT (/var/lib/docker), EAS_DOCKERD_LOG (/var/log/airflow-eas-dockerd.log),
#      EAS_DOCKERD_PIDFILE (/run/airflow-eas-dockerd.pid), EAS_DOCKERD_WAIT (seconds, 60).
set -uo pipefail

DATA_ROOT=${EAS_DOCKERD_DATA_ROOT:-/var/lib/docker}
LOG=${EAS_DOCKERD_LOG:-/var/log/airflow-eas-dockerd.log}
PIDFILE=${EAS_DOCKERD_PIDFILE:-/run/airflow-eas-dockerd.pid}
WAIT=${EAS_DOCKERD_WAIT:-60}

say() { echo "ensure-dockerd: $*" >&2; }
answers() { command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; }

answers && exit 0

if ! command -v dockerd >/dev/null; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "dockerd is not installed and cannot be installed here (needs root and apt-get)"; exit 1
  fi
  say "installing docker.io with apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io; } >/dev/null 2>&1 \
    || { say "apt-get install docker.io failed"; exit 1; }
fi

if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  say "dockerd (pid $(cat "$PIDFILE")) is running but not answering yet; waiting"
else
  if [ "$(id -u)" != 0 ]; then say "dockerd is not running and starting it needs root"; exit 1; fi
  mkdir -p "$DATA_ROOT" "$(dirname "$LOG")" "$(dirname "$PIDFILE")"
  # setsid + nohup: the engine outlives this script and the make that called it
  setsid nohup dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=overlay2 \
    --data-root "$DATA_ROOT" --pidfile "$PIDFILE.dockerd" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  say "started dockerd (pid $!, data root $DATA_ROOT, log $LOG)"
fi

for _ in $(seq 1 "$((WAIT * 2))"); do
  answers && exit 0
  if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "dockerd exited; last lines of $LOG:"; tail -n 5 "$LOG" >&2; exit 1
  fi
  sleep 0.5
done
say "dockerd did not answer within ${WAIT} s; last lines of $LOG:"; tail -n 5 "$LOG" >&2
exit 1
