package takeover

// Node states as stored in the node record and shown by `understudy status`.
// "down" is never written by an agent: a node is down when it has no live record.
const (
	StateDown      = "down"      // no live session
	StateProbation = "probation" // joined, not (yet) qualified for any role
	StateStandby   = "standby"   // qualified, free capacity, waiting for an orphaned role
	StateActive    = "active"    // holds at least one role
	StateDraining  = "draining"  // giving its roles back on operator request
	StateCordoned  = "cordoned"  // kept out of failover by the operator
)

// Event kinds written to the failover timeline.
const (
	EventJoin           = "join"
	EventTakeover       = "takeover"
	EventTakeoverFailed = "takeover-failed"
	EventRelease        = "release"
	EventDemote         = "demote"
	EventLost           = "lost"
	EventQualify        = "qualify"
	EventRemove         = "remove"
	EventCordon         = "cordon"
	EventRestart        = "restart"
)

// Command kinds an operator sends to an agent through etcd.
const (
	CommandDrain   = "drain"
	CommandMove    = "move"
	CommandRemove  = "remove"
	CommandQualify = "qualify"
)

// deriveState computes the state a node advertises from facts, so the state can never
// disagree with what the node actually holds.
func deriveState(qualified, cordoned, draining bool, held int) string {
	switch {
	case draining:
		return StateDraining
	case held > 0:
		return StateActive
	case cordoned:
		return StateCordoned
	case !qualified:
		return StateProbation
	default:
		return StateStandby
	}
}
