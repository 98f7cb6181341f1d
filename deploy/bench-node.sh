# Sourced by the bench scripts: builds caregrid, makes a throwaway database
# on the local PostgreSQL (PGURL, default 127.0.0.1:5432 as postgres), an
# admin service client for the load generator (CAREGRID_BENCH_CLIENT_ID and
# _SECRET), and starts one node on it ($port, $url); removes it all on exit.
# The bench client is one subject driving all the load: its rate limit is
# raised, not switched off, so the limiter's cost stays in the figures.
# The scheduled check of the whole audit trail is off: on a new database it
# first runs at a random minute after start and reads every row, so it
# would land in one scenario's window and not the others' (in production
# it runs every 6 hours).
# SERVE_ARGS adds flags to the node (e.g. --pprof-addr 127.0.0.1:6060).
# CAREGRID_BIN runs that binary instead of building bin/caregrid (to compare
# two builds, interleaved, on the same machine).
if [ -n "${CAREGRID_BIN:-}" ]; then
	mkdir -p bin && cp "$CAREGRID_BIN" bin/caregrid
else
	GOTOOLCHAIN=go1.27.3 go build -o bin/caregrid ./cmd/caregrid
fi
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432}
db=bench_$(date +%s)_$$
psql "$pgurl/postgres?sslmode=disable" -qc "CREATE DATABASE $db"
url="$pgurl/$db?sslmode=disable"
data=$(mktemp -d /tmp/caregrid-bench-XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
./bin/caregrid migrate --database-url "$url" >/dev/null
creds=$(./bin/caregrid admin client create --kind service --role admin --name bench --database-url "$url")
export CAREGRID_BENCH_CLIENT_ID=$(sed -n 's/^client id: //p' <<<"$creds")
export CAREGRID_BENCH_CLIENT_SECRET=$(sed -n 's/^client secret: //p' <<<"$creds")
./bin/caregrid serve --database-url "$url" --data-dir "$data" --http-addr "127.0.0.1:$port" --log-level warn \
	--rate-limit-subject 1000000/s --rate-limit-address 1000000/s --audit-check-every=-1s ${SERVE_ARGS:-} 2>"$data/serve.log" &
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
