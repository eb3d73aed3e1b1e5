// Package tgtdtest starts a private tgtd (the Linux SCSI target daemon from
// the Debian package `tgt`) for tests: one iSCSI target with N LUNs backed by
// sparse temporary files, listening on 127.0.0.1 (or, with WithNetns and WithPortal, on an
// address inside a test network namespace).
//
// Each Target gets its own management channel (tgtd -C N, which tgtd maps to
// the unix socket /var/run/tgtd/socket.N) and its own TCP portal, so several
// test binaries can run their own tgtd at the same time.
//
// Ownership and cleanup: Start registers a t.Cleanup that deletes the target,
// shuts tgtd down through tgtadm (tgtd ignores SIGTERM), kills it if it is
// still alive after a bound, waits for it, and removes the backing files and
// the control socket. On Linux the child also gets PR_SET_PDEATHSIG=SIGKILL so
// a crashed test binary does not leave a tgtd behind.
//
// Missing tgtd/tgtadm: the test is skipped, unless UNDERSTUDY_REQUIRE_ALL=1,
// then it fails.
package tgtdtest
