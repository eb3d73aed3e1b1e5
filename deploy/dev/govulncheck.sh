#!/usr/bin/env bash
# Runs govulncheck on this module against a pinned copy of the Go vulnerability database,
# without any access to vuln.go.dev: CI only reaches the Go module proxy. The database
# comes from the golang.org/x/vulndb module (its zip carries every report as OSV JSON in
# data/osv/), turned into the v1 layout `govulncheck -db file://` reads (index/db.json,
# index/modules.json, index/vulns.json, ID/<id>.json) by that module's own cmd/indexdb.
#
#   deploy/dev/govulncheck.sh               scan ./... ; exit code is govulncheck's
#                                           (3 = a vulnerability affects our code)
#   deploy/dev/govulncheck.sh --self-test   prove the DB is real and used: a temp module
#                                           calling golang.org/x/text@v0.3.5 language.Parse
#                                           must be reported (GO-2021-0113), with network
#                                           access to anything but the module cache blocked
#
# The DB is only as fresh as the pinned vulndb snapshot. To update, bump VULNDB_VERSION to
# the pseudo-version printed by `GOFLAGS= go list -m -f '{{.Version}} {{.Time}}'
# golang.org/x/vulndb@latest` (run outside this repo; vulndb has no tags, so `-versions`
# lists nothing), and GOVULNCHECK_VERSION to the newest of `go list -m -versions
# golang.org/x/vuln`.
# Idempotent; tools and DB are cached per version under $cache and built only when missing.
set -euo pipefail

VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
GOVULNCHECK_VERSION=v1.9.0

usage() { sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//'; }
self_test=0
case "${1:-}" in
"") ;;
--self-test) self_test=1 ;;
-h | --help) usage; exit 0 ;;
*) usage >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "$0")/../.." && pwd)
command -v go >/dev/null || export PATH=/usr/local/go/bin:$PATH
cache=${UNDERSTUDY_VULN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/understudy}
bin=$cache/bin
db=$cache/vulndb-$VULNDB_VERSION
mkdir -p "$bin"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# gotool runs go outside any module, with the caller's GOFLAGS (say -mod=vendor) and
# workspace ignored: `go install pkg@version` and `go mod download mod@version` then touch
# neither this repo's go.mod/go.sum nor anyone else's.
gotool() { (cd "$work" && GOFLAGS= GOWORK=off go "$@"); }

# tool NAME PKG VERSION: prints the path of the binary, building it only when missing.
tool() {
	local out=$bin/$1-$3
	if [ ! -x "$out" ]; then
		mkdir -p "$work/gobin"
		GOBIN=$work/gobin gotool install "$2@$3" >&2
		mv -f "$work/gobin/$1" "$out"
	fi
	printf '%s\n' "$out"
}

# build_db writes the v1 database into $db (atomically: a partial build is never used).
build_db() {
	[ -f "$db/SNAPSHOT" ] && return 0
	local info src when tmp osv ids newest
	info=$(gotool mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")
	src=$(sed -n 's/^\t"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
	when=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(sed -n 's/^\t"Info": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")")
	[ -d "$src/data/osv" ] && [ -n "$when" ] || {
		echo "govulncheck.sh: golang.org/x/vulndb@$VULNDB_VERSION: no data/osv or time in: $info" >&2
		return 1
	}
	local indexdb
	indexdb=$(tool indexdb golang.org/x/vulndb/cmd/indexdb "$VULNDB_VERSION")
	tmp=$(mktemp -d "$cache/vulndb.tmp.XXXXXX")
	"$indexdb" -vulns "$src/data/osv" -out "$tmp/db"
	# The OSV files in the repository carry "modified": 0001-01-01 (vuln.go.dev's deploy
	# fills it from git history), so indexdb writes that into db.json too. govulncheck shows
	# db.json's time as "DB updated": set it to the snapshot's commit time instead.
	printf '{"modified":"%s"}' "$when" >"$tmp/db/index/db.json"
	gzip -n -c "$tmp/db/index/db.json" >"$tmp/db/index/db.json.gz"
	osv=$(find "$src/data/osv" -name '*.json' | wc -l)
	ids=$(find "$tmp/db/ID" -name '*.json' | wc -l)
	if [ "$osv" -lt 1000 ] || [ "$ids" != "$osv" ] || ! grep -q '"GO-2021-0113"' "$tmp/db/index/modules.json"; then
		echo "govulncheck.sh: DB build looks wrong: $osv OSV files in, $ids entries out" >&2
		rm -rf "$tmp"
		return 1
	fi
	# The newest ID, not a date: the repository's OSV "published" times are zero too.
	newest=$(find "$tmp/db/ID" -name 'GO-*.json' -printf '%f\n' | sed 's/\.json$//' |
		sort -t- -k2,2n -k3,3n | tail -n 1)
	printf 'golang.org/x/vulndb@%s: snapshot %s, %s entries, newest %s\n' \
		"$VULNDB_VERSION" "$when" "$ids" "$newest" >"$tmp/db/SNAPSHOT"
	rm -rf "$db"
	mv "$tmp/db" "$db"
	rmdir "$tmp"
}

# self_test scans a throwaway module that calls a known-vulnerable function, once with our
# DB (must report GO-2021-0113, exit 3) and once with an empty v1 DB (must report nothing):
# so the finding provably comes from the -db we pass. Network is blocked for both scans
# (GOPROXY=off, HTTP(S) proxy on a closed port), so falling back to vuln.go.dev would fail.
self_test() {
	local gvc=$1 m=$work/selftest empty=$work/emptydb out rc
	mkdir -p "$m" "$empty/index" "$empty/ID"
	printf 'module example.com/vulnselftest\n\ngo 1.21\n\nrequire golang.org/x/text v0.3.5\n' >"$m/go.mod"
	cat >"$m/main.go" <<-'EOF'
		package main

		import (
			"fmt"
			"os"

			"golang.org/x/text/language"
		)

		func main() { fmt.Println(language.Parse(os.Args[1])) }
	EOF
	(cd "$m" && GOFLAGS=-mod=mod GOWORK=off go mod tidy)
	printf '{"modified":"2000-01-01T00:00:00Z"}' >"$empty/index/db.json"
	echo '[]' >"$empty/index/modules.json"
	echo '[]' >"$empty/index/vulns.json"
	offline() {
		(cd "$m" && GOFLAGS= GOWORK=off GOPROXY=off HTTP_PROXY=http://127.0.0.1:9 \
			HTTPS_PROXY=http://127.0.0.1:9 http_proxy=http://127.0.0.1:9 \
			https_proxy=http://127.0.0.1:9 NO_PROXY= no_proxy= "$@")
	}
	rc=0; out=$(offline "$gvc" -db "file://$db" ./... 2>&1) || rc=$?
	if [ "$rc" != 3 ] || ! grep -q 'GO-2021-0113' <<<"$out"; then
		printf '%s\n' "$out" >&2
		echo "self-test FAILED: pinned DB did not report GO-2021-0113 (exit $rc, want 3)" >&2
		return 1
	fi
	echo "self-test: pinned DB reports GO-2021-0113 for golang.org/x/text@v0.3.5 (exit 3)"
	rc=0; out=$(offline "$gvc" -db "file://$empty" ./... 2>&1) || rc=$?
	if [ "$rc" != 0 ] || grep -q 'GO-2021-0113' <<<"$out"; then
		printf '%s\n' "$out" >&2
		echo "self-test FAILED: empty DB control: exit $rc (want 0); the -db flag is not what finds it" >&2
		return 1
	fi
	echo "self-test: empty DB control reports nothing (exit 0): findings come from -db"
	echo "self-test: PASS"
}

build_db
gvc=$(tool govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION")
cd "$repo" # so that GOVERSION is the toolchain this repo builds with, as govulncheck sees it
echo "govulncheck $GOVULNCHECK_VERSION, $(go env GOVERSION), DB $(cat "$db/SNAPSHOT")"
if [ "$self_test" = 1 ]; then
	self_test "$gvc"
	exit 0
fi
rc=0
"$gvc" -db "file://$db" ./... || rc=$?
exit "$rc"
