package fence

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// Key is an 8-byte SCSI persistent reservation key. understudy's keys are
//
//	high 4 bytes: the first 4 bytes of SHA-256(cluster name)
//	low 4 bytes:  the node id (etcd nodes-ids/<node>, >= 1, never reused)
//
// The cluster prefix lets a shared LU tell apart registrations of two
// clusters (and of fence_scsi, which uses the first 2 bytes of MD5 of its
// cluster name); the node id makes keys unique within a cluster and lets
// an operator see who is registered. SHA-256 rather than fence_scsi's MD5:
// it is in every standard library and allowed in FIPS mode (fence_scsi
// needs a usedforsecurity=False workaround), and it is not a security
// property either way (keys are visible to every initiator). Key 0 is
// never valid: SPC-4 uses 0 for "unregister"/"not registered".
type Key uint64

// NewKey builds the key of node nodeID in cluster. cluster must not be
// empty and nodeID must be >= 1 (so the key is never 0).
func NewKey(cluster string, nodeID uint32) (Key, error) {
	if cluster == "" {
		return 0, fmt.Errorf("%w: cluster name is empty", ErrInvalidKey)
	}
	if nodeID == 0 {
		return 0, fmt.Errorf("%w: node id 0 (ids start at 1)", ErrInvalidKey)
	}
	return Key(uint64(ClusterPrefix(cluster))<<32 | uint64(nodeID)), nil
}

// ClusterPrefix is the high 4 bytes of every key of cluster.
func ClusterPrefix(cluster string) uint32 {
	h := sha256.Sum256([]byte(cluster))
	return binary.BigEndian.Uint32(h[:4])
}

// String renders the key as sg_persist does: "0x5a1e93c000000002".
func (k Key) String() string { return fmt.Sprintf("0x%016x", uint64(k)) }

// NodeID is the low 4 bytes: the node id when the key is one of ours.
func (k Key) NodeID() uint32 { return uint32(k) }

// Prefix is the high 4 bytes: the cluster hash when the key is one of ours.
func (k Key) Prefix() uint32 { return uint32(k >> 32) }

// InCluster reports whether k carries cluster's prefix (it could still be a
// foreign key that collides; 1 in 2^32 for a given pair of names).
func (k Key) InCluster(cluster string) bool { return k.Prefix() == ClusterPrefix(cluster) }

// ParseKey parses "0x5a1e93c000000002", "5a1e93c000000002" (hex, as
// sg_persist and fence_scsi print keys; up to 16 digits). 0 is rejected.
func ParseKey(s string) (Key, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	if h == "" || len(h) > 16 {
		return 0, fmt.Errorf("%w: %q: want 1-16 hex digits, optionally prefixed 0x", ErrInvalidKey, s)
	}
	v, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q: want 1-16 hex digits, optionally prefixed 0x", ErrInvalidKey, s)
	}
	if v == 0 {
		return 0, fmt.Errorf("%w: %q: key 0 means \"no key\"", ErrInvalidKey, s)
	}
	return Key(v), nil
}
