// Package fence owns I/O fencing for understudy: SCSI-3 persistent
// reservation keys and operations over a Transport (SG_IO on Linux block
// devices, or the userspace iSCSI initiator in fence/iscsi), multipath
// resolution, the watchdog that notices when this node was fenced, and an
// adapter for fence-agents programs (fence_ipmilan, fence_virsh, ...) for
// sites without shared SCSI storage.
//
// Model: every node registers its Key (cluster hash + node id) on every
// path of every device when it joins (Unfence); one registrant holds a
// Write Exclusive - Registrants Only (type 5) reservation. A new role
// holder fences the previous one with PREEMPT AND ABORT and verifies with
// READ KEYS on every path (Fence). From then on the target itself rejects
// the fenced node's writes with RESERVATION CONFLICT: storage safety does
// not depend on timing or on the fenced node cooperating.
//
// Safety invariants:
//   - Fence succeeds only after verification: the victim's key is absent
//     on every path and a reservation exists. Anything less is
//     ErrFenceUnverified, and the caller must not touch the storage.
//   - The library never registers a key on its own: not on retry, not
//     after a transport reconnects, not inside Fence. Registration happens
//     only through Register/Unfence, called by the agent when it joins, so
//     a fenced node stays fenced until it deliberately rejoins.
//   - RESERVATION CONFLICT is never retried: it is the device's answer.
//     Other retries are bounded by count and by ctx (RetryPolicy).
//   - Operations that register apply to every path (I_T nexus); PR state
//     changes (PREEMPT, RESERVE, CLEAR) go through one path (they are
//     LU-wide) and are verified through every path.
//   - The watchdog's goroutine is owned by the caller's ctx and its
//     channel is closed when it exits.
//   - Fence-agent secrets (passwords) travel only on the agent's stdin;
//     they never appear in argv, logs or errors.
//
// Registrations belong to I_T nexuses, not to nodes. On tgtd 1.0.85 (the
// lab target; measured by tgtd_*_test.go) a reconnected iSCSI session is a
// new nexus: READ KEYS still lists the key of the dead session (a stale
// registration) but the new session is not registered, so under type 5 its
// writes conflict and it cannot PREEMPT. This package never re-registers on
// its own; the agent decides (Unfence) when a node that was NOT fenced may
// register again -- only while it still holds its etcd claim. The
// watchdog's zero-length WRITE(16) probe notices the lost registration.
// Other tgtd facts: PREEMPT AND ABORT and READ FULL STATUS are rejected
// with ILLEGAL REQUEST (Fence falls back to PREEMPT); a preempted nexus
// gets UNIT ATTENTION 2A/03 "reservations preempted" (not 2A/05) on its
// next command; reads stay allowed; when the holder unregisters, the
// reservation disappears and any initiator may write until someone
// reserves again (Fence and Unfence do).
package fence
