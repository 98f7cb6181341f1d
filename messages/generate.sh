#!/usr/bin/env bash
# Regenerates the Go code for messages/*.proto into OUT (default: messages/).
# The generators are pinned by go.mod tool directives; protoc comes from the
# distribution (Debian: protobuf-compiler, libprotobuf-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-messages}
command -v protoc >/dev/null || { echo "protoc not found: install protobuf-compiler and libprotobuf-dev" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grain" github.com/asynkron/protoactor-go/protobuf/protoc-gen-go-grain
actor=$(go list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)
mkdir -p "$out"
PATH="$bin:$PATH" protoc -I messages -I "$actor" -I /usr/include \
	--go_out="$out" --go_opt=paths=source_relative \
	--go-grain_out="$out" --go-grain_opt=paths=source_relative \
	messages/*.proto
# protoc-gen-go-grain writes a file for every .proto with an enum, even when it
# has nothing to declare; such a file does not compile (unused imports).
for f in "$out"/*_grain.pb.go; do
	grep -q '^func ' "$f" || rm -f "$f"
done
gofmt -w "$out"/*.pb.go
