#!/usr/bin/env bash
# Starts one node on a throwaway database (bench-node.sh), seeds PATIENTS
# (1000000) patients with Romanian and Russian names straight into the
# database and the search read model (a progress bar on stderr; the JSON
# line reports the seed time and the name index's size), then runs the
# search-patients load generator RUNS times. Report the median.
#   PATIENTS (1000000) CONCURRENCY (16) DURATION (10s) RUNS (3) PGURL
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/bench-node.sh
./bin/caregrid bench seed --database-url "$url" --patients "${PATIENTS:-1000000}"
psql "$url" -qc "VACUUM ANALYZE patient_search" >/dev/null
for _ in $(seq 1 "${RUNS:-3}"); do
	./bin/caregrid bench search-patients --url "http://127.0.0.1:$port" \
		--concurrency "${CONCURRENCY:-16}" --duration "${DURATION:-10s}"
done
