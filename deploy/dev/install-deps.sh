#!/usr/bin/env bash
# Installs what building, the demo and the test suite need on Debian, as root.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

packages=(
	tgt            # tgtd: the iSCSI target with SPC-3 persistent reservations the tests fence against
	libiscsi-bin   # iscsi-test-cu, a cross-check of the target
	iproute2       # ip netns / veth / bridges for the lab
	iputils-arping # gratuitous ARP checks
	e2fsprogs      # mkfs.ext4 / fsck for storage tests
	fuse3          # FUSE block view in the lab
	keepalived     # bench failover compares against VRRP moving the same kind of VIP
	haproxy        # deploy/haproxy example: the lab test checks it follows a failover
	chromium       # /ui page tested in a real browser (lab/ui_browser_test.go)
	ca-certificates git gcc
)

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
