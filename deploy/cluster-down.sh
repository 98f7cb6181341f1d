#!/usr/bin/env bash
# Stops the members cluster-up.sh started, then its Consul agent if it
# started one: SIGTERM (drain, leave, stop), SIGKILL after 30 s. The
# database and .data/cluster stay.
set -uo pipefail
cd "$(dirname "$0")/.."
for f in .data/cluster/node-*.pid .data/cluster/consul.pid; do
	[ -f "$f" ] || continue
	pid=$(cat "$f")
	kill -TERM "$pid" 2>/dev/null
	for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	rm -f "$f"
done
