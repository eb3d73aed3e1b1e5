package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Claim is a node's hold on a role: the roles/<role>/claim key, bound to the holder's
// session lease.
type Claim struct {
	Role  string
	Node  string
	Token int64 // fencing token: CreateRevision of roles/<role>/claim; only grows
	Lease clientv3.LeaseID
}

// LastHolder records who held a role last, so that the next holder knows whom to fence.
type LastHolder struct {
	Node   string    `json:"node"`
	NodeID uint32    `json:"node_id"`
	Token  int64     `json:"token"`
	Clean  bool      `json:"clean"` // released gracefully: next holder need not fence
	Reason string    `json:"reason,omitempty"`
	Time   time.Time `json:"time"` // wall clock, display only
	// MACs are the holder's hardware addresses on its roles' VIP interfaces: after
	// fencing it, the next holder may find them still answering for the VIP (the
	// crashed agent's host keeps the address until it reboots) and takes it anyway.
	MACs []string `json:"macs,omitempty"`
}

// TryClaim tries, without blocking, to claim role for node with sess's lease, in one
// transaction: If(CreateRevision(claim)==0) Then(Put(claim, node, WithLease), Get(last))
// Else(Get(claim), Get(last)). It returns ok=true with the new claim and the previous
// LastHolder (prev.Node=="" if none) read atomically with the claim. When the role is
// held it returns ok=false, a nil error and the current holder's claim in c.
//
// If the role is already claimed by this very session (a retry after an ambiguous
// failure), TryClaim reports that claim as won.
func (s *Store) TryClaim(ctx context.Context, sess *Session, role, node string) (c Claim, prev LastHolder, ok bool, err error) {
	if err := checkClaimNames(role, node); err != nil {
		return Claim{}, LastHolder{}, false, fmt.Errorf("lease: claim: %w", err)
	}
	if err := sess.Err(); err != nil {
		return Claim{}, LastHolder{}, false, fmt.Errorf("lease: claim role %q: %w", role, err)
	}
	claimKey, lastKey := s.claimKey(role), s.lastKey(role)
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(claimKey), "=", 0),
	).Then(
		clientv3.OpPut(claimKey, node, clientv3.WithLease(sess.ID())),
		clientv3.OpGet(lastKey),
	).Else(
		clientv3.OpGet(claimKey),
		clientv3.OpGet(lastKey),
	).Commit()
	if err != nil {
		return Claim{}, LastHolder{}, false, wrapLeaseErr("claim role", role, err)
	}
	prev, err = decodeLast(role, resp.Responses[1].GetResponseRange().Kvs)
	if err != nil {
		return Claim{}, LastHolder{}, false, err
	}
	if resp.Succeeded {
		// All writes of a transaction happen at the revision in its header, so this is
		// the claim key's CreateRevision.
		return Claim{Role: role, Node: node, Token: resp.Header.Revision, Lease: sess.ID()}, prev, true, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 { // cannot happen: the compare said the key exists at this revision
		return Claim{}, LastHolder{}, false, fmt.Errorf("lease: claim role %q: claim key vanished inside a transaction", role)
	}
	held := claimFromKV(role, kvs[0])
	if held.Lease == sess.ID() && held.Node == node {
		return held, prev, true, nil
	}
	return held, LastHolder{}, false, nil
}

func claimFromKV(role string, kv *mvccpb.KeyValue) Claim {
	return Claim{Role: role, Node: string(kv.Value), Token: kv.CreateRevision, Lease: clientv3.LeaseID(kv.Lease)}
}

func decodeLast(role string, kvs []*mvccpb.KeyValue) (LastHolder, error) {
	var last LastHolder
	if len(kvs) == 0 {
		return last, nil
	}
	if err := json.Unmarshal(kvs[0].Value, &last); err != nil {
		return LastHolder{}, fmt.Errorf("lease: decode last holder of role %q: %w", role, err)
	}
	return last, nil
}

func checkClaimNames(role, node string) error {
	if err := CheckRoleName(role); err != nil {
		return err
	}
	return CheckNodeName(node)
}

// holds is the guard of every holder write: the claim key is still the one c created.
// A zero token must never be used: CreateRevision==0 means "no claim at all".
func (s *Store) holds(c Claim) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(s.claimKey(c.Role)), "=", c.Token)
}

// Adopt confirms that c, a claim a view showed under sess's lease, still exists
// unchanged, and returns the role's last-holder record read in the same transaction, as
// a won TryClaim would have. It writes nothing: unlike TryClaim it never creates a claim,
// so a view that is already stale (the claim was released meanwhile) cannot turn into a
// fresh claim. ErrNotHolder when the claim is gone, replaced or on another lease.
func (s *Store) Adopt(ctx context.Context, sess *Session, c Claim) (LastHolder, error) {
	if err := s.checkClaim(c); err != nil {
		return LastHolder{}, err
	}
	key := s.claimKey(c.Role)
	resp, err := s.cli.Txn(ctx).If(
		s.holds(c),
		clientv3.Compare(clientv3.Value(key), "=", c.Node),
		clientv3.Compare(clientv3.LeaseValue(key), "=", int64(sess.ID())),
	).Then(clientv3.OpGet(s.lastKey(c.Role))).Commit()
	if err != nil {
		return LastHolder{}, fmt.Errorf("lease: adopt claim of role %q (token %d): %w", c.Role, c.Token, err)
	}
	if !resp.Succeeded {
		return LastHolder{}, fmt.Errorf("lease: adopt claim of role %q (token %d): %w", c.Role, c.Token, ErrNotHolder)
	}
	return decodeLast(c.Role, resp.Responses[0].GetResponseRange().Kvs)
}

// Rebind moves this node's claim c to the lease of sess, keeping the key and therefore its
// CreateRevision (the fencing token): after an etcd outage a holder that kept running
// carries its claim over to its new session before the old lease expires. Guarded by the
// claim still being c; ErrNotHolder otherwise (then nothing is written).
func (s *Store) Rebind(ctx context.Context, sess *Session, c Claim) (Claim, error) {
	if err := s.checkClaim(c); err != nil {
		return Claim{}, err
	}
	key := s.claimKey(c.Role)
	resp, err := s.cli.Txn(ctx).If(s.holds(c), clientv3.Compare(clientv3.Value(key), "=", c.Node)).
		Then(clientv3.OpPut(key, c.Node, clientv3.WithLease(sess.ID()))).Commit()
	if err != nil {
		return Claim{}, fmt.Errorf("lease: rebind claim of role %q (token %d): %w", c.Role, c.Token, err)
	}
	if !resp.Succeeded {
		return Claim{}, fmt.Errorf("lease: rebind claim of role %q (token %d): %w", c.Role, c.Token, ErrNotHolder)
	}
	c.Lease = sess.ID()
	return c, nil
}

// MarkHolder writes last={c.Node, nodeID, c.Token, Clean:false}, guarded by the claim
// still being c. Call it right after fencing the previous holder succeeded and before
// touching storage: from then on a crash of this node means the next holder must fence
// it. It also deletes roles/<role>/target if that names c.Node (the move arrived).
// ErrNotHolder if the claim is gone or replaced.
func (s *Store) MarkHolder(ctx context.Context, c Claim, nodeID uint32, macs ...string) error {
	if err := s.checkClaim(c); err != nil {
		return err
	}
	b, err := json.Marshal(LastHolder{Node: c.Node, NodeID: nodeID, Token: c.Token, Time: time.Now(), MACs: macs})
	if err != nil {
		return fmt.Errorf("lease: encode last holder of role %q: %w", c.Role, err)
	}
	target := s.targetKey(c.Role)
	resp, err := s.cli.Txn(ctx).If(s.holds(c)).Then(
		clientv3.OpPut(s.lastKey(c.Role), string(b)),
		clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value(target), "=", c.Node)},
			[]clientv3.Op{clientv3.OpDelete(target)}, nil),
	).Commit()
	if err != nil {
		return fmt.Errorf("lease: mark %q holder of role %q (token %d): %w", c.Node, c.Role, c.Token, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("lease: mark %q holder of role %q (token %d): %w", c.Node, c.Role, c.Token, ErrNotHolder)
	}
	return nil
}

// Release deletes the claim, guarded by the claim still being c, and in the same
// transaction puts last (if non-nil; a zero Time is set to now) and the handoff target
// (if non-empty). ErrNotHolder if the claim was not ours any more; then nothing is written.
func (s *Store) Release(ctx context.Context, c Claim, last *LastHolder, target string) error {
	if err := s.checkClaim(c); err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpDelete(s.claimKey(c.Role))}
	if last != nil {
		l := *last
		if l.Time.IsZero() {
			l.Time = time.Now()
		}
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("lease: encode last holder of role %q: %w", c.Role, err)
		}
		ops = append(ops, clientv3.OpPut(s.lastKey(c.Role), string(b)))
	}
	if target != "" {
		if err := CheckNodeName(target); err != nil {
			return fmt.Errorf("lease: release role %q to target: %w", c.Role, err)
		}
		ops = append(ops, clientv3.OpPut(s.targetKey(c.Role), target))
	}
	resp, err := s.cli.Txn(ctx).If(s.holds(c)).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("lease: release role %q (token %d): %w", c.Role, c.Token, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("lease: release role %q (token %d): %w", c.Role, c.Token, ErrNotHolder)
	}
	return nil
}

func (s *Store) checkClaim(c Claim) error {
	if err := checkClaimNames(c.Role, c.Node); err != nil {
		return fmt.Errorf("lease: claim: %w", err)
	}
	if c.Token <= 0 {
		return fmt.Errorf("lease: role %q: claim without a token: %w", c.Role, ErrNotHolder)
	}
	return nil
}
