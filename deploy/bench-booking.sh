#!/usr/bin/env bash
# Books on a fresh database of the local PostgreSQL (PGURL, default the
# machine's 127.0.0.1:5432 as postgres): starts one node on it, then runs
# booking-hot, booking-sql-baseline and booking-spread RUNS times, in turn,
# so the edge and the SQL baseline share the database and the machine's
# state. Each run prints one JSON line; report medians.
#   CONCURRENCY (32) DURATION (10s) RUNS (3) DOCTORS (50, spread only)
set -euo pipefail
cd "$(dirname "$0")/.."
go build -o bin/caregrid ./cmd/caregrid
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=bench_$(date +%s)
psql "$pgurl/postgres?sslmode=disable" -qc "CREATE DATABASE $db"
url="$pgurl/$db?sslmode=disable"
data=$(mktemp -d /tmp/caregrid-bench-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./bin/caregrid migrate --database-url "$url" >/dev/null
# One bench subject drives all the load: its budget is raised, not switched
# off, so the limiter's cost stays in the figures.
./bin/caregrid serve --dev-auth --database-url "$url" --data-dir "$data" --http-addr "127.0.0.1:$port" --log-level warn \
	--rate-limit-subject 1000000/s --rate-limit-address 1000000/s 2>"$data/serve.log" &
pid=$!
cleanup() {
	kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null || true
	psql "$pgurl/postgres?sslmode=disable" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
	rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.2
done
common=(--concurrency "${CONCURRENCY:-32}" --duration "${DURATION:-10s}")
edge=(--url "http://127.0.0.1:$port" --dev-auth-key-file "$data/dev-auth.key")
for _ in $(seq 1 "${RUNS:-3}"); do
	./bin/caregrid bench booking-hot "${edge[@]}" "${common[@]}"
	./bin/caregrid bench booking-sql-baseline --database-url "$url" "${common[@]}"
	./bin/caregrid bench booking-spread "${edge[@]}" "${common[@]}" --doctors "${DOCTORS:-50}"
done
