// Package health serves an agent's state over HTTP for load balancers, monitoring and
// operators: /healthz (the agent loop runs and etcd answers), /readyz (the node can take
// part in failover), /roles/<role> (200 only on the role's holder, for HAProxy/F5 checks),
// /status (JSON: local and cluster status), /metrics (Prometheus), and the read-only web
// status page /ui (with /ui/state.json: status plus the recent timeline, polled by the page).
//
// Invariants:
//   - Read-only: no route changes anything, and only GET and HEAD are accepted: every
//     other method gets 405 before routing, on every path (readOnly).
//   - TLS is optional (WithTLS, TLSConfig): when configured, only TLS 1.2+ is served (no
//     plain-HTTP fallback on the same port) and, with a client CA, only clients with a
//     certificate it signed complete the handshake.
//   - No secrets: bodies are built from takeover.LocalStatus and takeover.ClusterStatus,
//     which carry no credentials.
//   - /healthz, /readyz and a holder's /roles/<role> answer from the agent's local state
//     only, so they keep answering while etcd is unreachable; a holder keeps getting
//     traffic until it demotes itself, which is exactly when its local roles change.
//   - Every request that reaches etcd is bounded by its own timeout.
package health
