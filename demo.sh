#!/usr/bin/env bash
# Builds understudy and plays the seed's story (FIG. 5 failure/recovery, FIG. 7 add/remove)
# on this machine. Run as root on Debian: sudo ./demo.sh [demo flags, e.g. --keep]
set -euo pipefail
cd "$(dirname "$0")"
source deploy/dev/install-deps.sh
export PATH=/usr/local/go/bin:$PATH GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
mkdir -p bin
go build -o bin/understudy ./cmd/understudy
exec ./bin/understudy demo "$@"
