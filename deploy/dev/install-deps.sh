#!/usr/bin/env bash
# Installs what building and the demo need on Debian, as root, and with
# UNDERSTUDY_TEST_DEPS=1 also what the test suite needs.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

# What building, the demo and `understudy bench` need.
packages=(
	tgt            # tgtd: the lab's SAN, with SPC-3 persistent reservations
	iproute2       # ip netns / veth / bridges for the lab
	iputils-arping # gratuitous ARP checks
	e2fsprogs      # mkfs.ext4 / fsck for the roles' storage
	fuse3          # FUSE block view of the LUNs in the lab
	keepalived     # bench failover compares against VRRP moving the same kind of VIP
	nftables       # understudy nemesis: partitions inside a lab node's namespace
	ca-certificates git gcc
)
# What only the test suite needs (test.sh sets UNDERSTUDY_TEST_DEPS=1), so the README's
# first command does not download a browser.
if [ "${UNDERSTUDY_TEST_DEPS:-}" = 1 ]; then
	packages+=(
		libiscsi-bin # iscsi-test-cu, a cross-check of the target
		haproxy      # deploy/haproxy example: the lab test checks it follows a failover
		chromium     # /ui page tested in a real browser (lab/ui_browser_test.go)
	)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: need root to install: ${missing[*]}" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

# Go: this module needs Go >= 1.26. Use /usr/local/go if present; otherwise Debian's Go,
# which fetches the toolchain named in go.mod from the Go module proxy (GOTOOLCHAIN=auto).
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
	export PATH=/usr/local/go/bin:$PATH
fi
if ! command -v go >/dev/null 2>&1; then
	apt-get install -y -qq golang-go </dev/null
fi
go version
