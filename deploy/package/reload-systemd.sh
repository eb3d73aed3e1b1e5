#!/bin/sh
# Package maintainer script (post-install and post-remove of the understudy .deb and
# .rpm): make a running systemd see the new, changed or removed unit file. It neither
# enables nor starts understudy.service: a node needs its /etc/understudy/agent.yaml first.
# Without systemd as init (containers, chroots) there is nothing to do.
set -e
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl daemon-reload || true
fi
exit 0
