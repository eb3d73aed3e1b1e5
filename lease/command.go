package lease

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Command kinds the agent acts on.
const (
	CommandDrain   = "drain"
	CommandMove    = "move"
	CommandRemove  = "remove"
	CommandQualify = "qualify"
)

// Command is an operator intent for one node, stored at commands/<node>/<id> until the
// node's agent has acted on it and calls DoneCommand.
type Command struct {
	ID    string    `json:"id"`
	Kind  string    `json:"kind"` // drain|move|remove|qualify
	Role  string    `json:"role,omitempty"`
	To    string    `json:"to,omitempty"`
	Force bool      `json:"force,omitempty"`
	Time  time.Time `json:"time"` // wall clock, display only
}

// SendCommand stores cmd for node. An empty ID is filled with a time-based one (which
// sorts in sending order) and never overwrites another command; an explicit ID is written
// as given, so resending the same command is idempotent. A zero Time is set to now.
func (s *Store) SendCommand(ctx context.Context, node string, cmd Command) error {
	if err := CheckNodeName(node); err != nil {
		return fmt.Errorf("lease: send command: %w", err)
	}
	if cmd.Kind == "" {
		return fmt.Errorf("%w: send command to node %q: kind is empty (want drain, move, remove or qualify)",
			ErrInvalidArgument, node)
	}
	if cmd.Time.IsZero() {
		cmd.Time = time.Now()
	}
	if cmd.ID != "" {
		if !idRE.MatchString(cmd.ID) {
			return fmt.Errorf("%w: send command to node %q: id %q: want 1-128 of [A-Za-z0-9._-]",
				ErrInvalidArgument, node, cmd.ID)
		}
		return s.putCommand(ctx, node, cmd, false)
	}
	for n := cmd.Time.UnixNano(); ; n++ {
		cmd.ID = fmt.Sprintf("%020d", n)
		err := s.putCommand(ctx, node, cmd, true)
		if !errors.Is(err, errKeyExists) {
			return err
		}
	}
}

func (s *Store) putCommand(ctx context.Context, node string, cmd Command, createOnly bool) error {
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("lease: encode command %q for node %q: %w", cmd.ID, node, err)
	}
	ok, err := s.put(ctx, s.commandKey(node, cmd.ID), string(b), createOnly)
	if err != nil {
		return fmt.Errorf("lease: send %s command %q to node %q: %w", cmd.Kind, cmd.ID, node, err)
	}
	if !ok {
		return errKeyExists
	}
	return nil
}

// put writes key=val; with createOnly it writes only if the key does not exist and
// reports whether it wrote.
func (s *Store) put(ctx context.Context, key, val string, createOnly bool) (bool, error) {
	if !createOnly {
		_, err := s.cli.Put(ctx, key, val)
		return err == nil, err
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, val)).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// DoneCommand deletes node's command id. Deleting a command that is already gone is not
// an error.
func (s *Store) DoneCommand(ctx context.Context, node, id string) error {
	if err := CheckNodeName(node); err != nil {
		return fmt.Errorf("lease: done command: %w", err)
	}
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w: done command of node %q: id %q: want 1-128 of [A-Za-z0-9._-]",
			ErrInvalidArgument, node, id)
	}
	if _, err := s.cli.Delete(ctx, s.commandKey(node, id)); err != nil {
		return fmt.Errorf("lease: delete command %q of node %q: %w", id, node, err)
	}
	return nil
}

// Commands returns node's pending commands, oldest first (by creation in etcd).
// Undecodable commands are logged and skipped.
func (s *Store) Commands(ctx context.Context, node string) ([]Command, error) {
	if err := CheckNodeName(node); err != nil {
		return nil, fmt.Errorf("lease: list commands: %w", err)
	}
	resp, err := s.cli.Get(ctx, s.commandDir(node), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("lease: list commands of node %q: %w", node, err)
	}
	var cmds []Command
	for _, kv := range sortByCreation(resp.Kvs) {
		cmd, err := decodeCommand(kv)
		if err != nil {
			s.log.Warn("skipping undecodable command", zap.ByteString("key", kv.Key), zap.Error(err))
			continue
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

func decodeCommand(kv *mvccpb.KeyValue) (Command, error) {
	var cmd Command
	if err := json.Unmarshal(kv.Value, &cmd); err != nil {
		return Command{}, err
	}
	return cmd, nil
}

// sortByCreation returns kvs ordered by their creation revision: the order in which
// commands were sent, whatever their ids.
func sortByCreation(kvs []*mvccpb.KeyValue) []*mvccpb.KeyValue {
	out := slices.Clone(kvs)
	slices.SortStableFunc(out, func(a, b *mvccpb.KeyValue) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	return out
}
