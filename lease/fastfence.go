package lease

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Fast detection (see RoleSpec.Detection): a standby that decided a holder is dead
// before etcd expired its lease must be the only one to act on it. StartFencing is that
// decision's transaction: roles/<role>/fencing names the standby, bound to its own
// lease (so it vanishes if that standby dies), and is only written while the role is
// still held under the token the standby saw. The standby then fences the holder,
// revokes its lease (RevokeLease), claims the role and removes the key (DoneFencing).

// StartFencing records node as the one fencing role's holder of claim token, if the
// claim is still that one and nobody else is fencing it. It reports whether it did.
func (s *Store) StartFencing(ctx context.Context, sess *Session, role, node string, token int64) (bool, error) {
	if err := checkClaimNames(role, node); err != nil {
		return false, fmt.Errorf("lease: start fencing: %w", err)
	}
	if token <= 0 {
		return false, fmt.Errorf("lease: start fencing role %q: token %d: want the holder's claim token", role, token)
	}
	if err := sess.Err(); err != nil {
		return false, fmt.Errorf("lease: start fencing role %q: %w", role, err)
	}
	fk := s.fencingKey(role)
	resp, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(s.claimKey(role)), "=", token),
		clientv3.Compare(clientv3.CreateRevision(fk), "=", 0),
	).Then(clientv3.OpPut(fk, node, clientv3.WithLease(sess.ID()))).Commit()
	if err != nil {
		return false, wrapLeaseErr("start fencing role", role, err)
	}
	return resp.Succeeded, nil
}

// DoneFencing removes node's fencing mark of role (a no-op if another node's, or none).
func (s *Store) DoneFencing(ctx context.Context, role, node string) error {
	fk := s.fencingKey(role)
	_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(fk), "=", node)).Then(clientv3.OpDelete(fk)).Commit()
	if err != nil {
		return fmt.Errorf("lease: done fencing role %q: %w", role, err)
	}
	return nil
}

// RevokeLease revokes another node's lease: its claims and its node record go with it,
// at once instead of after the TTL. Only after that node was fenced.
func (s *Store) RevokeLease(ctx context.Context, id clientv3.LeaseID) error {
	if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("lease: revoke lease %x: %w", int64(id), err)
	}
	return nil
}
