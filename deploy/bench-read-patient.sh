#!/usr/bin/env bash
# Starts one node on a throwaway database (bench-node.sh), runs the
# read-patient load generator against it RUNS times, and stops it. Each run
# prints one JSON line; report the median.
#   CONCURRENCY (32) DURATION (10s) RUNS (3) PATIENTS (200) PGURL
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/bench-node.sh
for _ in $(seq 1 "${RUNS:-3}"); do
	./bin/caregrid bench read-patient --url "http://127.0.0.1:$port" \
		--concurrency "${CONCURRENCY:-32}" --duration "${DURATION:-10s}" --patients "${PATIENTS:-200}"
done
