#!/usr/bin/env bash
# Starts one node on a throwaway database (bench-node.sh), then runs
# booking-hot, booking-sql-baseline, booking-spread and booking-sql-baseline
# over the same doctors RUNS times, in turn,
# so the edge and the SQL baseline share the database and the machine's
# state. Each run prints one JSON line; report medians.
#   CONCURRENCY (32) DURATION (10s) RUNS (3) DOCTORS (50, the spread runs) PGURL
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/bench-node.sh
common=(--concurrency "${CONCURRENCY:-32}" --duration "${DURATION:-10s}")
edge=(--url "http://127.0.0.1:$port")
for _ in $(seq 1 "${RUNS:-3}"); do
	./bin/caregrid bench booking-hot "${edge[@]}" "${common[@]}"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}"
	./bin/caregrid bench booking-spread "${edge[@]}" "${common[@]}" --doctors "${DOCTORS:-50}"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}" --doctors "${DOCTORS:-50}"
done
