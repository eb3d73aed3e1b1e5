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

step "fuzz (${FUZZTIME:=5000x} per target, two targets at a time)"
# Every FuzzXxx in the tree, each in its own `go test -fuzz` with one worker, two at a
# time (2 cores): most of a short run is building and linking, which this overlaps. A
# target's output is shown when it ends; any failure fails the step. The budget is a
# count of inputs, not a duration: Go 1.26's fuzz coordinator can report its own
# -fuzztime deadline as a failure ("context deadline exceeded", golang/go#75804, fixed
# in Go 1.27), which a busy machine hits; a count has no deadline to race.
export FUZZTIME
fuzz_one() {
	out=$(go test -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 10x -parallel 1 "$1" 2>&1) && rc=0 || rc=$?
	if [ "$rc" = 0 ]; then echo "ok   $1 $2"; else printf 'FAIL %s %s\n%s\n' "$1" "$2" "$out"; fi
	return "$rc"
}
export -f fuzz_one
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r f; do
	pkg=./$(dirname "${f#./}")
	grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r fz; do echo "$pkg $fz"; done
done | xargs -P 2 -L 1 bash -c 'fuzz_one "$0" "$1"'
