#!/usr/bin/env bash
# Builds the understudy packages: the binary (trimmed paths, version stamped), the man
# pages and shell completions that binary generates, packed by nfpm as described in
# deploy/package/nfpm.yaml.
#
#   deploy/package/build.sh [deb] [rpm]      (both when none is named)
#
# Environment:
#   VERSION      what `understudy version` prints (default: git describe --tags --always
#                --dirty); the package version is derived from it, see pkg_version.
#   DIST         where the packages go (default: dist/ in the repository)
#   CGO_ENABLED  default 0: one static binary that runs on any glibc. exec.user is then
#                looked up in /etc/passwd only; set 1 for NSS (LDAP/SSSD) users.
#   TRIMPATH     default -trimpath (paths of this machine stay out of the binary); the
#                test sets it empty, with CGO_ENABLED=1, to reuse the build cache of the
#                suite's own builds instead of compiling everything a second time.
#   SOURCE_DATE_EPOCH  file times and man page dates (default: the last commit's time), so
#                two builds of one commit give the same packages.
#   MAINTAINER, LICENSE  package metadata (defaults below).
#
# Needs Go and bash only: nfpm runs through `go run` at a pinned version, so go.mod does
# not change; the first run downloads and builds it (about a minute).
set -euo pipefail

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

die() {
	echo "build.sh: $*" >&2
	exit 2
}

# pkg_version turns VERSION into a version dpkg and rpm order correctly (nfpm writes a
# semver prerelease as ~rc.1, which sorts before the release, and metadata as +...):
#   v1.2.3 -> 1.2.3             v1.2.3-rc.1 -> 1.2.3-rc.1 (package 1.2.3~rc.1)
#   v1.2.3-4-gabc1234 (4 commits after the tag) -> 1.2.3+git4.abc1234 (after 1.2.3)
#   abc1234 (no tag yet) -> 0.0.0+git.abc1234          any of them -dirty -> ...dirty
pkg_version() {
	local v=${1#v} dirty=""
	if [[ $v == *-dirty ]]; then
		v=${v%-dirty}
		dirty=dirty
	fi
	local semver='[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?'
	if [[ $v =~ ^($semver)-([0-9]+)-g([0-9a-f]+)$ ]]; then
		echo "${BASH_REMATCH[1]}+git${BASH_REMATCH[3]}.${BASH_REMATCH[4]}${dirty:+.$dirty}"
	elif [[ $v =~ ^$semver$ ]]; then
		echo "$v${dirty:++$dirty}"
	elif [[ $v =~ ^[0-9a-f]{4,40}$ ]]; then
		echo "0.0.0+git.$v${dirty:+.$dirty}"
	else
		die "VERSION $1: want v1.2.3, v1.2.3-rc.1 or git describe output"
	fi
}

repo=$(cd "$(dirname "$0")/../.." && pwd)
dist=${DIST:-$repo/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
cd "$repo"

formats=("$@")
[ ${#formats[@]} -gt 0 ] || formats=(deb rpm)
for f in "${formats[@]}"; do
	case $f in
	deb | rpm) ;;
	*) die "unknown package format $f: allowed deb, rpm" ;;
	esac
done

VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-unknown)}
PKG_VERSION=$(pkg_version "$VERSION") # a plain assignment, so that set -e sees a failure
export VERSION PKG_VERSION
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export MAINTAINER=${MAINTAINER:-"understudy maintainers <understudy@understudy-ha.invalid>"}
export LICENSE=${LICENSE:-NOASSERTION}

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/understudy-package.XXXXXX")
export STAGE
trap 'rm -rf "$STAGE"' EXIT

echo "build.sh: understudy $VERSION (package $PKG_VERSION) -> $dist"
CGO_ENABLED=${CGO_ENABLED:-0} GOOS=linux GOARCH=amd64 \
	go build ${TRIMPATH--trimpath} -ldflags "-s -w -X main.version=$VERSION" \
	-o "$STAGE/understudy" ./cmd/understudy

# The packaged binary lives in /usr/bin, the repository's unit (for a hand install) names
# /usr/local/bin.
sed 's|/usr/local/bin/understudy|/usr/bin/understudy|g' deploy/systemd/understudy.service >"$STAGE/understudy.service"
grep -q '^ExecStart=/usr/bin/understudy ' "$STAGE/understudy.service" ||
	die "deploy/systemd/understudy.service: no ExecStart=/usr/local/bin/understudy to point at /usr/bin"

"$STAGE/understudy" docs man "$STAGE/man"
gzip -9n "$STAGE"/man/*.1
"$STAGE/understudy" docs completions "$STAGE/completions"

for f in "${formats[@]}"; do
	go run "$NFPM" package --config deploy/package/nfpm.yaml --packager "$f" --target "$dist/"
done
