package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// View is everything under the prefix at one revision.
type View struct {
	Rev       int64                    // the etcd revision the View was read at
	Spec      *Spec                    // nil if none is applied or the stored one is undecodable
	SpecRev   int64                    // ModRevision of the spec key; 0 if none
	SpecErr   error                    // why Spec is nil although SpecRev != 0 (e.g. a newer version's fields)
	IDs       map[string]uint32        // every known node (permanent)
	Nodes     map[string]NodeRecord    // live nodes only
	Cordoned  map[string]bool          // by node
	Qualified map[string]Qualification // by node
	Claims    map[string]Claim         // by role
	Last      map[string]LastHolder    // by role
	Targets   map[string]string        // by role
	Fencing   map[string]string        // by role: the node fencing its holder early (fast detection)
	Commands  map[string][]Command     // by node, oldest first
}

// View reads everything under the prefix in one request, consistent at one revision:
// a read-only transaction of two ranges that together cover the prefix except the event
// history (up to 1000 entries no View user needs; read it with Events). Values that do
// not decode are logged and skipped rather than failing the whole View, so one bad
// record cannot blind every agent and `status`.
func (s *Store) View(ctx context.Context) (*View, error) {
	events := s.key(dirEvents)
	afterEvents := s.key(strings.TrimSuffix(dirEvents, "/") + "0") // "/"+1 == "0"
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.prefix, clientv3.WithRange(events)),
		clientv3.OpGet(afterEvents, clientv3.WithRange(clientv3.GetPrefixRangeEnd(s.prefix))),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("lease: read view of %s: %w", s.prefix, err)
	}
	v := &View{
		Rev:       resp.Header.Revision,
		IDs:       map[string]uint32{},
		Nodes:     map[string]NodeRecord{},
		Cordoned:  map[string]bool{},
		Qualified: map[string]Qualification{},
		Claims:    map[string]Claim{},
		Last:      map[string]LastHolder{},
		Targets:   map[string]string{},
		Fencing:   map[string]string{},
		Commands:  map[string][]Command{},
	}
	var kvs []*mvccpb.KeyValue
	for _, r := range resp.Responses {
		kvs = append(kvs, r.GetResponseRange().Kvs...)
	}
	// Commands are appended in creation order, so that each node's list is oldest first.
	for _, kv := range sortByCreation(kvs) {
		rel := strings.TrimPrefix(string(kv.Key), s.prefix)
		if err := v.add(rel, kv); err != nil {
			s.log.Warn("view: skipping undecodable value", zap.ByteString("key", kv.Key), zap.Error(err))
		}
	}
	return v, nil
}

// add decodes one key-value (key relative to the prefix) into v. Unknown keys are
// ignored: a newer agent may write keys this one does not know.
func (v *View) add(rel string, kv *mvccpb.KeyValue) error {
	if rel == keySpec {
		v.SpecRev = kv.ModRevision
		spec, err := ParseSpec(kv.Value)
		if err != nil {
			v.SpecErr = fmt.Errorf("lease: stored cluster spec (revision %d): %w", kv.ModRevision, err)
			return err
		}
		v.Spec = spec
		return nil
	}
	if role, leaf, ok := roleKeyParts(rel); ok {
		return v.addRole(role, leaf, kv)
	}
	dir, name, ok := strings.Cut(rel, "/")
	if !ok || name == "" {
		return nil
	}
	switch dir + "/" {
	case dirNodes:
		return decodeInto(kv.Value, name, v.Nodes)
	case dirIDs:
		id, err := parseID(name, kv.Value)
		if err == nil {
			v.IDs[name] = id
		}
		return err
	case dirCordoned:
		v.Cordoned[name] = true
	case dirQualified:
		return decodeInto(kv.Value, name, v.Qualified)
	case dirCommands:
		node, _, ok := strings.Cut(name, "/")
		if !ok {
			return nil
		}
		cmd, err := decodeCommand(kv)
		if err == nil {
			v.Commands[node] = append(v.Commands[node], cmd)
		}
		return err
	}
	return nil
}

func (v *View) addRole(role, leaf string, kv *mvccpb.KeyValue) error {
	switch "/" + leaf {
	case suffixClaim:
		v.Claims[role] = claimFromKV(role, kv)
	case suffixLast:
		return decodeInto(kv.Value, role, v.Last)
	case suffixTarget:
		v.Targets[role] = string(kv.Value)
	case suffixFence:
		v.Fencing[role] = string(kv.Value)
	}
	return nil
}

// decodeInto decodes JSON b and stores it in m[name].
func decodeInto[T any](b []byte, name string, m map[string]T) error {
	var x T
	if err := json.Unmarshal(b, &x); err != nil {
		return err
	}
	m[name] = x
	return nil
}
