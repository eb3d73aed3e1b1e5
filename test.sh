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

step "go test -race"
# Build once with full parallelism, then run one test binary at a time: the agent and
# lab tests measure leases against real time and must not starve each other.
go build -race ./...
go test -race -count=1 -p 1 -timeout 30m ./...

step "fuzz (${FUZZTIME:=5s} per target)"
grep -rl --include='*_test.go' '^func Fuzz' . | while read -r f; do
	pkg=./$(dirname "${f#./}")
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r fz; do
		go test -run "^$" -fuzz "^${fz}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 10x "$pkg"
	done
done
