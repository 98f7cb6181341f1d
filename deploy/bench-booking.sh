#!/usr/bin/env bash
# Starts one node on a throwaway database (bench-node.sh), then runs
# booking-hot and booking-spread through the edge, each followed by
# booking-sql-baseline over the same doctors, RUNS times, so the edge and
# the SQL baseline share the database and the machine's state. Every run
# adds bookings, and a node slows as its grains and tables grow, so the
# order alternates: odd runs start with the hot doctor, even runs with the
# spread doctors, and neither side always runs on the other's state. Each
# run prints one JSON line per scenario; report medians. Both sides book
# for the same patients (PATIENTS, default 100 or DOCTORS if more: fewer
# would book one patient twice at the same time), so that only the doctors
# differ: more patients cost more on their own (their grains, fences and
# reservation rows), whatever the doctors.
#   CONCURRENCY (32) DURATION (10s) RUNS (4) DOCTORS (50, the spread runs) PATIENTS PGURL
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/bench-node.sh
doctors=${DOCTORS:-50}
common=(--concurrency "${CONCURRENCY:-32}" --duration "${DURATION:-10s}" --patients "${PATIENTS:-$((doctors > 100 ? doctors : 100))}")
edge=(--url "http://127.0.0.1:$port")
hot() {
	./bin/caregrid bench booking-hot "${edge[@]}" "${common[@]}"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}"
}
spread() {
	./bin/caregrid bench booking-spread "${edge[@]}" "${common[@]}" --doctors "$doctors"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}" --doctors "$doctors"
}
for run in $(seq 1 "${RUNS:-4}"); do
	if ((run % 2)); then hot; spread; else spread; hot; fi
done
