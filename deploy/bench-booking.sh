#!/usr/bin/env bash
# Starts one node on a throwaway database (bench-node.sh), then runs
# booking-hot and booking-spread through the edge, each followed by
# booking-sql-baseline over the same doctors, RUNS times, so the edge and
# the SQL baseline share the database and the machine's state. Every run
# adds bookings, and a node slows as its grains and tables grow, so the
# order alternates: odd runs start with the hot doctor, even runs with the
# spread doctors, and neither side always runs on the other's state. Each
# run prints one JSON line per scenario; report medians.
#   CONCURRENCY (32) DURATION (10s) RUNS (4) DOCTORS (50, the spread runs) PGURL
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/bench-node.sh
common=(--concurrency "${CONCURRENCY:-32}" --duration "${DURATION:-10s}")
edge=(--url "http://127.0.0.1:$port")
hot() {
	./bin/caregrid bench booking-hot "${edge[@]}" "${common[@]}"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}"
}
spread() {
	./bin/caregrid bench booking-spread "${edge[@]}" "${common[@]}" --doctors "${DOCTORS:-50}"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}" --doctors "${DOCTORS:-50}"
}
for run in $(seq 1 "${RUNS:-4}"); do
	if ((run % 2)); then hot; spread; else spread; hot; fi
done
