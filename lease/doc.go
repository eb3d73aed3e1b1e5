// Package lease owns everything understudy keeps in etcd: node sessions (leases kept
// alive by our own loop), the node registry (permanent ids, live node records, cordons,
// qualification results), role claims with fencing tokens, the cluster spec, the bounded
// event history, operator commands, and the consistent View and Watch of all of it.
//
// Everything lives under one prefix, by default "/understudy/<cluster>/":
//
//	nodes/<node>           NodeRecord JSON, bound to the node's session lease
//	nodes-ids/<node>       decimal node id, permanent (ids start at 1, never reused)
//	nodes-ids-next         decimal next id to hand out (the allocation counter)
//	cordoned/<node>        "1" while the operator keeps the node out of failover
//	qualified/<node>       Qualification JSON (permanent)
//	roles/<role>/claim     holder node name, bound to the holder's session lease
//	roles/<role>/last      LastHolder JSON (no lease): whom the next holder must fence
//	roles/<role>/target    handoff target node of a `role move` (no lease)
//	spec                   cluster spec YAML exactly as applied
//	events/<%020d unixnano>-<node>  Event JSON, newest 1000 kept
//	commands/<node>/<id>   Command JSON; the agent deletes it when done
//
// Safety invariants:
//
//   - A role has at most one claim key, created only by a transaction that requires the
//     key to be absent, and bound to the claimer's lease. The fencing token is the claim
//     key's CreateRevision, so it only grows across holders.
//   - Every write a holder makes about its role (MarkHolder, Release) is guarded by
//     CreateRevision(claim)==token, so a node whose lease expired can no longer write,
//     even if it does not know yet that it lost the role. A zero token never matches.
//   - Session.LastAck is the monotonic time at which the last acknowledged keepalive
//     request was SENT, so the server's expiry deadline is never earlier than
//     LastAck()+TTL(). Session.Done closes no later than that bound; callers that must
//     stop before someone else can take over subtract their own margin from it.
//   - Node ids are allocated once by compare-and-swap on a counter and never reused, even
//     after RemoveNode, so a fence key never names two different nodes.
//   - PutSpec parses and validates before writing: an invalid spec is never stored.
//
// Wall-clock times in records (Since, Time) are for display only; no safety decision in
// this package reads them.
package lease
