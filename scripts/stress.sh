#!/usr/bin/env bash
# `make test-stress`: the JACK and daemon tests with a busy process on each core beside them.
# The busy processes run at ordinary priority; they are started here and stopped on every exit path.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
cores=$(nproc)
pids=()
stop_busy() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
trap stop_busy EXIT
trap 'exit 130' INT TERM
for _ in $(seq "$cores"); do
  "$PY" -c 'while True: pass' &
  pids+=("$!")
done
echo "test-stress: ${#pids[@]} busy processes (one per core) beside the JACK and daemon tests"
"$PY" -m pytest -q -p no:cacheprovider -m jack "$@"
