package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// defaultMaxEvents is how many events AppendEvent keeps (the newest ones).
const defaultMaxEvents = 1000

// Store is the cluster's view of etcd under one prefix. Safe for concurrent use; it holds
// no state of its own beyond the client, so any number of Stores may share a client.
type Store struct {
	cli    *clientv3.Client
	prefix string
	log    *zap.Logger
	// maxEvents bounds the event history; a knob so tests can use a small bound.
	maxEvents int
}

// NewStore returns a Store for the keys under prefix (see Prefix). A missing trailing
// "/" is added so that the prefix never matches a sibling cluster's keys. A nil log
// discards logs.
func NewStore(cli *clientv3.Client, prefix string, log *zap.Logger) *Store {
	if log == nil {
		log = zap.NewNop()
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Store{cli: cli, prefix: prefix, log: log, maxEvents: defaultMaxEvents}
}

// Client returns the etcd client the Store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix returns the key prefix, always ending in "/".
func (s *Store) Prefix() string { return s.prefix }

// Watch watches every key under the prefix from revision fromRev (0 = from now), with
// the previous key-value of each event. Pass View().Rev+1 to see exactly the changes after
// a View. The channel closes when ctx is done; a watch that fails (e.g. compacted
// revision) delivers a response with Err() set and closes.
func (s *Store) Watch(ctx context.Context, fromRev int64) clientv3.WatchChan {
	return s.cli.Watch(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(fromRev), clientv3.WithPrevKV())
}

// LeaseTimeLeft asks etcd how long lease id has left, in whole seconds as etcd reports
// them (truncated: 0 means less than a second left). It returns ErrLeaseGone if the lease
// no longer exists (expired or revoked).
func (s *Store) LeaseTimeLeft(ctx context.Context, id clientv3.LeaseID) (time.Duration, error) {
	resp, err := s.cli.TimeToLive(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL < 0) {
		return 0, fmt.Errorf("lease: time to live of lease %x: %w", int64(id), ErrLeaseGone)
	}
	if err != nil {
		return 0, fmt.Errorf("lease: time to live of lease %x: %w", int64(id), err)
	}
	return time.Duration(resp.TTL) * time.Second, nil
}
