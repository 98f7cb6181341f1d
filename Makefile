# caregrid: `make run` starts one node on the embedded PostgreSQL; `make test`
# is what CI runs (after .ci/run has started PostgreSQL and Redis).

GO ?= go
# Go 1.26.8's standard library has known vulnerabilities (net/http,
# crypto/tls, crypto/x509, html/template, mime/multipart: make vulncheck);
# every build here uses 1.27.3 (go.mod's toolchain line), which the go
# command fetches from the module proxy.
export GOTOOLCHAIN := go1.27.3

# The browser tests keep a screenshot of each console page here (test
# artefacts; CI keeps the directory).
export CAREGRID_SCREENSHOTS ?= $(CURDIR)/artefacts/screenshots

.PHONY: run test fuzz lint vulncheck generate check-generated bench build cluster-up cluster-down consul

# The production binary: no development tokens.
build:
	$(GO) build -o bin/caregrid ./cmd/caregrid

# make run builds with development tokens (-tags devauth) for trying things.
run:
	$(GO) build -tags devauth -o bin/caregrid ./cmd/caregrid
	./bin/caregrid serve --dev-auth

# Three members on this machine (static peers, mutual TLS, the local
# PostgreSQL); see the README's "Running a cluster".
cluster-up:
	bash deploy/cluster-up.sh

cluster-down:
	bash deploy/cluster-down.sh

# A real Consul agent built from its Go module (deploy/consul-dev): about
# 11 minutes from a cold module cache on a 2-core machine, seconds after.
consul:
	cd deploy/consul-dev && $(GO) build -o ../../bin/consul .

# Every test runs under the race detector, the multi-member ones included
# (in one process, and as processes of the -race test binary, whose race
# reports fail their tests), and every benchmark runs once (-benchtime 1x)
# so that none rots unnoticed; then each fuzz target for a fixed time.
# cmd/caregrid's end-to-end tests take about 10 minutes under -race on two
# cores: the default 10-minute bound of one test binary is too tight.
# The Consul tests (-tags consul) need bin/consul: it builds (niced) alongside the
# other tests (about 11 minutes from a cold module cache, seconds after).
# It starts first, so its module download overlaps lint's.
test:
	@mkdir -p bin; set -e; \
	(cd deploy/consul-dev && nice -n 19 $(GO) build -o ../../bin/consul .) >bin/consul-build.log 2>&1 & consul=$$!; \
	$(MAKE) --no-print-directory lint check-generated vulncheck; \
	$(GO) test -race -count=1 -timeout 20m -bench . -benchtime 1x ./...; \
	$(GO) test -count=1 -tags devauth -run Dev -bench . -benchtime 1x ./edge/; \
	$(MAKE) --no-print-directory fuzz; \
	wait $$consul || { echo "building bin/consul failed:"; cat bin/consul-build.log; exit 1; }; \
	$(GO) test -race -count=1 -tags consul -run Consul ./cmd/caregrid/

# Each fuzz target, found by name, for FUZZTIME (beyond the seed corpus
# that every test run covers).
FUZZTIME ?= 15s
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' actors cluster cmd edge internal persistence | xargs -r -n1 dirname | sort -u); do \
		for target in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz ./$$dir $$target for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) ./$$dir; \
		done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags devauth ./...
	$(GO) vet -tags consul ./cmd/caregrid/

# govulncheck (reachable call paths) against the Go vulnerability database
# as the golang.org/x/vulndb module had it at VULNDB: its OSV reports,
# indexed here with its own indexdb, so nothing but the module proxy is
# needed. Any finding fails. Move VULNDB forward to learn of newer ones.
VULNDB ?= v0.0.0-20261105234957-e22db6528018
GOVULNCHECK ?= v1.9.0
vulncheck:
	@db=bin/vulndb/$(VULNDB); \
	if [ ! -f $$db/index/db.json ]; then \
		src=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
		[ -d "$$src/data/osv" ] || { echo "golang.org/x/vulndb@$(VULNDB) has no data/osv"; exit 1; }; \
		rm -rf $$db; mkdir -p $$db; \
		$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB) -vulns "$$src/data/osv" -out $$db || exit 1; \
	fi; \
	echo "govulncheck against golang.org/x/vulndb@$(VULNDB)"; \
	$(GO) run golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK) -db file://$(CURDIR)/$$db ./...

generate:
	bash messages/generate.sh

# Generated code is committed; this fails when it is not what
# `make generate` would write.
check-generated:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	bash messages/generate.sh $$tmp && \
	for f in $$tmp/*.pb.go; do \
		cmp -s $$f messages/$$(basename $$f) || { echo "messages/$$(basename $$f) is stale: run make generate"; exit 1; }; \
	done; \
	for f in messages/*.pb.go; do \
		[ -f $$tmp/$$(basename $$f) ] || { echo "$$f is no longer generated: remove it"; exit 1; }; \
	done; \
	echo "generated code is up to date"

# Go micro-benchmarks, then the HTTP load generator against a fresh node.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./actors/... ./edge/... ./persistence/
	bash deploy/bench-read-patient.sh
