#!/usr/bin/env bash
# Runs a cluster of NODES (3) caregrid members on this machine, without
# containers: they find each other through a dev Consul agent (bin/consul,
# built by `make consul` if missing; HTTP on 127.0.0.1:8500), or with
# PROVIDER=peers from a static list of each other, over mutual TLS
# (certificates from
# `caregrid dev-certs`), one database (DATABASE_URL; default: a database
# caregrid_cluster on the local PostgreSQL at PGURL), HTTP on 8081.., remoting
# on 7101... State, logs and pids live under .data/cluster; `make cluster-down`
# stops the members (SIGTERM: each leaves the cluster cleanly).
set -euo pipefail
export GOTOOLCHAIN=go1.27.3 # the toolchain we ship (see the Makefile)
cd "$(dirname "$0")/.."
dir=.data/cluster
n=${NODES:-3}
go build -o bin/caregrid ./cmd/caregrid
mkdir -p "$dir"
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432}
url=${DATABASE_URL:-$pgurl/caregrid_cluster?sslmode=disable}
if [ -z "${DATABASE_URL:-}" ] && ! psql "$pgurl/postgres?sslmode=disable" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'caregrid_cluster'" | grep -q 1; then
	psql "$pgurl/postgres?sslmode=disable" -qc "CREATE DATABASE caregrid_cluster"
fi
./bin/caregrid migrate --database-url "$url" >/dev/null
[ -f "$dir/certs/ca.crt" ] || ./bin/caregrid dev-certs --dir "$dir/certs" --members "$n" >/dev/null
peers=$(seq -s, -f '127.0.0.1:%g' 7101 $((7100 + n)))
provider=(--cluster-peers "$peers")
if [ "${PROVIDER:-consul}" = consul ]; then
	[ -x bin/consul ] || make consul
	if ! curl -fsS http://127.0.0.1:8500/v1/status/leader >/dev/null 2>&1; then
		./bin/consul agent -dev -bind 127.0.0.1 -client 127.0.0.1 -log-level warn >>"$dir/consul.log" 2>&1 &
		echo $! >"$dir/consul.pid"
		for _ in $(seq 1 100); do curl -fsS http://127.0.0.1:8500/v1/status/leader 2>/dev/null | grep -q : && break; sleep 0.2; done
	fi
	provider=(--cluster-provider consul --consul-addr 127.0.0.1:8500)
fi
for i in $(seq 1 "$n"); do
	if [ -f "$dir/node-$i.pid" ] && kill -0 "$(cat "$dir/node-$i.pid")" 2>/dev/null; then
		echo "node $i is already running (pid $(cat "$dir/node-$i.pid"))"
		continue
	fi
	./bin/caregrid serve --database-url "$url" --http-addr "127.0.0.1:$((8080 + i))" --public-url http://127.0.0.1:8081 \
		--data-dir "$dir/node-$i" --master-key-file "$dir/master.key" --cluster-port $((7100 + i)) "${provider[@]}" \
		--cluster-tls-ca "$dir/certs/ca.crt" --cluster-tls-cert "$dir/certs/member-$i.crt" --cluster-tls-key "$dir/certs/member-$i.key" \
		${SERVE_ARGS:-} >>"$dir/node-$i.log" 2>&1 &
	echo $! >"$dir/node-$i.pid"
	# The first member writes the shared master key; the others read it.
	[ "$i" = 1 ] && for _ in $(seq 1 100); do [ -f "$dir/master.key" ] && break; sleep 0.1; done
done
for i in $(seq 1 "$n"); do
	for _ in $(seq 1 150); do
		curl -fsS "http://127.0.0.1:$((8080 + i))/readyz" >/dev/null 2>&1 && break
		sleep 0.2
	done
	curl -fsS "http://127.0.0.1:$((8080 + i))/readyz" >/dev/null || { echo "node $i did not become ready; see $dir/node-$i.log" >&2; exit 1; }
done
# Ready means a member serves; wait until every one also sees all the others.
for i in $(seq 1 "$n"); do
	for _ in $(seq 1 100); do
		curl -fsS "http://127.0.0.1:$((8080 + i))/metrics" | grep -qx "caregrid_cluster_members $n" && break
		sleep 0.2
	done
done
echo "caregrid cluster: $n members on http://127.0.0.1:8081..$((8080 + n)) (remoting $peers, mutual TLS, ${PROVIDER:-consul}); logs in $dir"
echo "an admin client: ./bin/caregrid admin client create --kind service --role admin --name ops --database-url '$url'"
