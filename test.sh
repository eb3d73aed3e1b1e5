#!/usr/bin/env bash
# The whole test suite: installs its Debian packages, then vet, gofmt, staticcheck, the
# race-enabled tests (real embedded etcd, real tgtd, real processes), and a short run of
# every fuzz target. Run as root on Debian: sudo ./test.sh
set -euo pipefail
cd "$(dirname "$0")"
UNDERSTUDY_TEST_DEPS=1 source deploy/dev/install-deps.sh
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

step() { printf '\n=== %s\n' "$*"; }

step "go vet"
go vet ./...

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted:"; echo "$unformatted"; exit 1
fi

step "staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

step "govulncheck (offline: a pinned golang.org/x/vulndb snapshot from the module proxy)"
deploy/dev/govulncheck.sh --self-test
deploy/dev/govulncheck.sh

step "go test -race"
# Build once with full parallelism, then run one test binary at a time: the agent and
# lab tests measure leases against real time and must not starve each other.
go build -race ./...
go test -race -count=1 -p 1 -timeout 30m ./...

step "nemesis: every scenario once (the CI profile; docs/reliability.md)"
# The namespace lab with three etcd members, tgtd and five agents, every fault injected
# once while clients write; exit 1 if an invariant failed. The seed varies per run and
# is printed: replay a failure with --seed. Needs root (namespaces, tgtd, loop devices).
if [ "$(id -u)" = 0 ]; then
	nemesis_bin=$(mktemp -d)
	trap 'rm -rf "$nemesis_bin"' EXIT
	go build -o "$nemesis_bin/understudy" ./cmd/understudy
	"$nemesis_bin/understudy" nemesis run --scenario all --duration 0 --seed "${NEMESIS_SEED:-$(( $(date +%s) % 1000000 + 1 ))}"
elif [ "${UNDERSTUDY_REQUIRE_ALL:-}" = 1 ]; then
	echo "nemesis: needs root, and UNDERSTUDY_REQUIRE_ALL=1 forbids skipping it" >&2; exit 1
else
	echo "nemesis: skipped (needs root)"
fi

step "fuzz (${FUZZTIME:=3s} per target)"
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg=./$(dirname "${f#./}")
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r fz; do
		go test -run "^$" -fuzz "^${fz}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 10x "$pkg"
	done
done
