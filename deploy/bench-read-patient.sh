#!/usr/bin/env bash
# Starts one node on a throwaway embedded PostgreSQL, runs the read-patient
# load generator against it RUNS times, and stops it. Each run prints one
# JSON line; report the median.
#   CONCURRENCY (32) DURATION (10s) RUNS (3) PATIENTS (200)
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/caregrid ./cmd/caregrid
data=$(mktemp -d /tmp/caregrid-bench-XXXXXX)
chmod 755 "$data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# One bench subject drives all the load: its budget is raised, not switched
# off, so the limiter's cost stays in the figures.
./bin/caregrid serve --dev-auth --data-dir "$data" --http-addr "127.0.0.1:$port" --log-level warn \
	--rate-limit-subject 1000000/s --rate-limit-address 1000000/s 2>"$data/serve.log" &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
for _ in $(seq 1 "${RUNS:-3}"); do
	./bin/caregrid bench read-patient --url "http://127.0.0.1:$port" --dev-auth-key-file "$data/dev-auth.key" \
		--concurrency "${CONCURRENCY:-32}" --duration "${DURATION:-10s}" --patients "${PATIENTS:-200}"
done
