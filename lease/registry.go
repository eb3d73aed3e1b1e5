package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Node states as written in NodeRecord.State.
const (
	StateProbation = "probation"
	StateStandby   = "standby"
	StateActive    = "active"
	StateDraining  = "draining"
	StateCordoned  = "cordoned"
)

// NodeRecord is a live node's self-description, bound to its session lease: it
// disappears when the node's lease does.
type NodeRecord struct {
	Name      string    `json:"name"`
	ID        uint32    `json:"id"`
	State     string    `json:"state"` // probation|standby|active|draining|cordoned
	Roles     []string  `json:"roles,omitempty"`
	Addresses []string  `json:"addresses,omitempty"`
	Health    string    `json:"health,omitempty"` // health listen URL
	Version   string    `json:"version"`
	Since     time.Time `json:"since"` // wall clock, display only
	TTL       int64     `json:"ttl"`   // granted TTL seconds
	Lease     int64     `json:"lease"` // lease id, so status can ask TimeToLive
	// Heartbeat is where the node receives fast-detection heartbeats (ip:port).
	Heartbeat string `json:"heartbeat,omitempty"`
	// HealthTLS: the health endpoint speaks TLS only; fast detection probes it so.
	HealthTLS bool `json:"health_tls,omitempty"`
}

// Qualification is the result of checking that a node can run the cluster's roles.
// It is permanent; it is stale when SpecRev differs from the current spec's revision.
type Qualification struct {
	Passed  bool      `json:"passed"`
	Checks  []Check   `json:"checks"`
	SpecRev int64     `json:"spec_rev"`
	Time    time.Time `json:"time"`
}

// Check is one qualification check of one role.
type Check struct {
	Role   string `json:"role"`
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// AllocateID returns node's permanent id, allocating the next one (starting at 1) if the
// node has none. Ids are never reused, also not after RemoveNode: the counter key only
// grows. Idempotent and safe under concurrent callers (compare-and-swap on the counter).
func (s *Store) AllocateID(ctx context.Context, node string) (uint32, error) {
	if err := CheckNodeName(node); err != nil {
		return 0, fmt.Errorf("lease: allocate id: %w", err)
	}
	idKey, nextKey := s.idKey(node), s.key(keyIDNext)
	for {
		resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(idKey), clientv3.OpGet(nextKey)).Commit()
		if err != nil {
			return 0, fmt.Errorf("lease: allocate id for node %q: %w", node, err)
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			return parseID(node, kvs[0].Value)
		}
		next, nextRev := uint64(1), int64(0)
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			next, err = strconv.ParseUint(string(kvs[0].Value), 10, 64)
			if err != nil || next == 0 || next > math.MaxUint32 {
				return 0, fmt.Errorf("lease: allocate id for node %q: bad counter %s=%q",
					node, nextKey, kvs[0].Value)
			}
			nextRev = kvs[0].ModRevision
		}
		put, err := s.cli.Txn(ctx).If(
			clientv3.Compare(clientv3.ModRevision(nextKey), "=", nextRev),
			clientv3.Compare(clientv3.CreateRevision(idKey), "=", 0),
		).Then(
			clientv3.OpPut(idKey, strconv.FormatUint(next, 10)),
			clientv3.OpPut(nextKey, strconv.FormatUint(next+1, 10)),
		).Commit()
		if err != nil {
			return 0, fmt.Errorf("lease: allocate id %d for node %q: %w", next, node, err)
		}
		if put.Succeeded {
			return uint32(next), nil
		}
		// Someone else allocated meanwhile (maybe for this node): read again.
	}
}

func parseID(node string, v []byte) (uint32, error) {
	id, err := strconv.ParseUint(string(v), 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("lease: node %q has a bad id %q", node, v)
	}
	return uint32(id), nil
}

// PutNode writes rec as the node's live record, bound to sess's lease. TTL and Lease are
// always set from sess, so that status can ask etcd about the right lease.
func (s *Store) PutNode(ctx context.Context, sess *Session, rec NodeRecord) error {
	if err := CheckNodeName(rec.Name); err != nil {
		return fmt.Errorf("lease: put node record: %w", err)
	}
	if err := sess.Err(); err != nil {
		return fmt.Errorf("lease: put node record %q: %w", rec.Name, err)
	}
	rec.TTL = int64(sess.TTL() / time.Second)
	rec.Lease = int64(sess.ID())
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("lease: encode node record %q: %w", rec.Name, err)
	}
	_, err = s.cli.Put(ctx, s.nodeKey(rec.Name), string(b), clientv3.WithLease(sess.ID()))
	return wrapLeaseErr("put node record", rec.Name, err)
}

// RemoveNode forgets node in one transaction: its id allocation, cordon, qualification,
// live record and pending commands. The id itself is never handed out again. It does not
// touch claims: drain the node first.
func (s *Store) RemoveNode(ctx context.Context, node string) error {
	if err := CheckNodeName(node); err != nil {
		return fmt.Errorf("lease: remove node: %w", err)
	}
	_, err := s.cli.Txn(ctx).Then(
		clientv3.OpDelete(s.idKey(node)),
		clientv3.OpDelete(s.cordonKey(node)),
		clientv3.OpDelete(s.qualifyKey(node)),
		clientv3.OpDelete(s.nodeKey(node)),
		clientv3.OpDelete(s.commandDir(node), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("lease: remove node %q: %w", node, err)
	}
	return nil
}

// SetCordoned marks node cordoned (kept out of failover) or clears the mark.
func (s *Store) SetCordoned(ctx context.Context, node string, on bool) error {
	if err := CheckNodeName(node); err != nil {
		return fmt.Errorf("lease: cordon: %w", err)
	}
	var err error
	if on {
		_, err = s.cli.Put(ctx, s.cordonKey(node), "1")
	} else {
		_, err = s.cli.Delete(ctx, s.cordonKey(node))
	}
	if err != nil {
		return fmt.Errorf("lease: set cordoned=%t on node %q: %w", on, node, err)
	}
	return nil
}

// PutQualification stores node's latest qualification result (permanent).
func (s *Store) PutQualification(ctx context.Context, node string, q Qualification) error {
	if err := CheckNodeName(node); err != nil {
		return fmt.Errorf("lease: put qualification: %w", err)
	}
	b, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("lease: encode qualification of node %q: %w", node, err)
	}
	if _, err := s.cli.Put(ctx, s.qualifyKey(node), string(b)); err != nil {
		return fmt.Errorf("lease: put qualification of node %q: %w", node, err)
	}
	return nil
}
