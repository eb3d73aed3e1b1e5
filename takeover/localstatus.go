package takeover

import "time"

// LocalStatus is what this agent knows about itself right now. The health endpoint
// serves it to load balancers, so it must be cheap to produce and never block on etcd.
type LocalStatus struct {
	Node         string           `json:"node"`
	NodeID       uint32           `json:"node_id"`
	State        string           `json:"state"`
	Roles        map[string]int64 `json:"roles"` // role -> fencing token
	EtcdOK       bool             `json:"etcd_ok"`
	LoopAge      time.Duration    `json:"loop_age_ns"`      // since the agent loop last ran
	KeepaliveAge time.Duration    `json:"keepalive_age_ns"` // since the last acknowledged keepalive was sent
	TTL          time.Duration    `json:"ttl_ns"`
	Ready        bool             `json:"ready"`
}
