// Package iscsi is a userspace iSCSI initiator (RFC 7143) in pure Go: the
// transport understudy uses to send SCSI commands -- persistent
// reservations included -- to a logical unit on machines without a kernel
// initiator, and the block I/O path of the lab.
//
// # What it owns
//
//   - ParseURL: iscsi://[user[:secret]@]host[:port]/<iqn>/<lun>.
//   - Dial/Session: one iSCSI session with one TCP connection per LUN path:
//     login (AuthMethod None or one-way CHAP-MD5; operational negotiation of
//     digests, segment and burst lengths, InitialR2T, ImmediateData), the
//     CmdSN window, a reader goroutine dispatching responses by ITT, a
//     keepalive goroutine (NOP-Out pings, answers to the target's NOP-In),
//     ABORT TASK when a caller's context ends, Logout on Close.
//   - Session.Execute satisfies fence.Transport; Session.Device gives block
//     I/O (READ/WRITE(16)).
//
// Not implemented: ErrorRecoveryLevel > 0, multiple connections per session,
// mutual CHAP, extended CDBs (> 16 bytes), bidirectional commands, Text
// requests (SendTargets discovery), following login redirects (they are
// returned as *LoginError matching ErrRedirect).
//
// # Safety invariants
//
//   - A command is sent at most once. When the connection fails, every
//     outstanding command returns an error matching ErrConnectionLost (it may
//     or may not have executed); nothing is replayed on the next connection.
//   - Reconnect is lazy: the next Execute after a failure logs in again with
//     the same InitiatorName and ISID and TSIH 0 (a new session). There is no
//     background reconnect loop.
//   - The initiator never issues PERSISTENT RESERVE OUT on its own, in
//     particular never re-registers a key after a reconnect. Re-registration
//     is the caller's decision: a fenced node that re-registered by itself
//     would undo its own fence.
//   - When a caller's ctx ends, the task is aborted (ABORT TASK, bounded by
//     Config.AbortTimeout) before Execute returns; if the abort is not
//     confirmed the connection is dropped, which at ErrorRecoveryLevel 0
//     ends every task of the session, so an abandoned WRITE cannot land later
//     unnoticed.
//   - CHAP secrets are never logged and never appear in errors or
//     Target.String.
//
// # Identity: ISID and sessions
//
// A SCSI initiator port is InitiatorName + ISID. Derive the ISID from the
// node id (ISIDFromNodeID) so it is stable across restarts. Two sessions
// with the same InitiatorName and ISID to the same target reinstate each
// other: measured with tgtd, the second login makes tgtd close the first
// session (TestSameISIDReinstatement), and with lazy reconnect the two would
// keep kicking each other out. Use ISIDFromNodeIDIndex(id, i) with a
// distinct i per concurrent session to the same target (e.g. per LUN).
//
// # Persistent reservations across reconnects (measured with tgtd 1.0.85)
//
// tgtd keys a registration by its internal I_T nexus object, which it
// creates per iSCSI session (id = TSIH, plus the nexus creation time; see
// lookup_registration_by_nexus in tgt's usr/spc.c). The ISID plays no part:
// a new login gets a new TSIH, so it is a new, unregistered nexus even with
// the same InitiatorName and ISID (TestPRRegistrationAcrossSessions; same
// result after a clean Logout, after tgtd drops the connection, and after
// the initiator's socket is closed):
//
//   - The old registration stays on the LU, stale: READ KEYS still lists the
//     key, and if the old nexus held the reservation, it stays the holder.
//     tgtd does not remove registrations when a session ends.
//   - The new session is not registered: REGISTER with the old key as
//     RESERVATION KEY gets RESERVATION CONFLICT, and with a Write Exclusive -
//     Registrants Only reservation its WRITEs get RESERVATION CONFLICT.
//   - After REGISTER AND IGNORE EXISTING KEY on the new session, READ KEYS
//     lists the key twice (stale nexus + new nexus) and writes succeed. The
//     new nexus is a registrant, not the holder: RELEASE from it returns GOOD
//     and changes nothing, RESERVE from it gets RESERVATION CONFLICT.
//   - PREEMPT with the key as SERVICE ACTION RESERVATION KEY removes every
//     registration holding it, stale ones included; the fenced node's writes
//     then get RESERVATION CONFLICT, also after it reconnects (the initiator
//     does not re-register; TestPRNoAutomaticReregistration).
//   - tgtd does not implement PREEMPT AND ABORT: it answers CHECK CONDITION,
//     ILLEGAL REQUEST, INVALID FIELD IN CDB (24/00) (usr/spc.c has it
//     commented out; TestPRPreemptAndAbort). Fence with PREEMPT on tgtd.
//   - The first command of every new session gets UNIT ATTENTION 29/00
//     (power on, reset, or bus device reset occurred). Session.Execute returns
//     it as a Response; Device retries UNIT ATTENTION itself.
//
// Consequence for callers: after Session.Nexus().Generation changes, the
// node is no longer a registrant through this path until it decides to
// re-register; the stale registration it left keeps its key listed until a
// PREEMPT or CLEAR.
//
// # Connection drops, measured with tgtd
//
// `tgtadm --op delete --mode conn --tid T --sid S --cid C` makes tgtd close
// the TCP connection at once; the reader sees EOF and fails the connection
// with ErrConnectionLost ("target closed the connection"); the next Execute
// logs in again and gets a new TSIH. A stopped target (SIGSTOP) is detected
// by the keepalive after NopInterval + NopTimeout (ErrKeepaliveTimeout); the
// re-login then times out after LoginTimeout until the target runs again.
// tgtd's own pings (target parameter nop_interval) are answered by the
// keepalive goroutine.
package iscsi
