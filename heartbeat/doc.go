// Package heartbeat owns the peer heartbeats of fast detection: the packet codec (a
// small binary datagram authenticated with HMAC-SHA256 under the cluster key) and the
// Service that sends this node's heartbeat to its peers over UDP and records, on the
// monotonic clock, when each peer was last heard.
//
// Safety: a heartbeat only ever delays a takeover (a live holder is not suspected);
// it never causes one by itself. The takeover package acts on a missing heartbeat only
// after a second, independent check failed, with a fresh etcd session of its own, and
// then fences before anything else. A forged or replayed packet could at worst keep a
// dead holder "alive" until its lease expires, the lease-mode outcome; the key and the
// per-sender sequence numbers are there to prevent even that.
package heartbeat
