// Package takeover is the node agent: it owns this node's life in the cluster — its etcd
// session, registration and qualification — and the roles it runs: claiming orphaned
// roles, fencing their previous holder, starting their resources in order (storage, exec,
// vip, health) with rollback, stopping them in reverse, and carrying out operator
// commands (drain, move, remove, qualify).
//
// Safety invariants:
//
//   - A role is only started after this node's claim transaction succeeded, the previous
//     holder was fenced (unless it released cleanly) and the claim was re-checked when
//     recording this node as the holder (lease.Store.MarkHolder).
//   - A node holding roles stops them before the earliest moment etcd could expire its
//     lease: last acknowledged keepalive send time + TTL, on the monotonic clock. Every
//     etcd call made while holding roles is bounded by the demotion deadline
//     (last keepalive + TTL - margin), so a hung etcd cannot delay demotion.
//   - A failed takeover undoes what it did and releases the claim; the last-holder record
//     stays unclean, so the next node fences whatever the attempt touched.
//   - A node never takes a role back by itself after recovering (no automatic failback
//     unless the spec asks for it), and never re-registers its fence key except when it
//     (re)joins or has just won a claim: a fenced node cannot undo its own fence.
//
// All decisions are made by one goroutine per session (loop.run); resources, watchdogs and
// the health endpoint only report to it.
package takeover
