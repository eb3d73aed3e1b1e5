// Package lab runs a whole understudy cluster on one machine, for `understudy demo`,
// `understudy bench` and the end-to-end tests: an embedded etcd in this process, and one
// real `understudy agent` child process per node, driven from outside exactly as an
// operator would (SIGKILL to simulate a crash, the CLI for operator actions).
//
// The Farm (demo, bench, FIG. 5/7 tests) runs on 127.0.0.1 with exec-only roles: every
// role is a `understudy demo-service` on its own loopback port, so a client (Probe) sees
// which node and which tenure (fencing token) serves it.
//
// The namespace network (netns_linux.go) runs the full takeover: a switch namespace with
// a bridge (no route out), a core namespace with etcd and tgtd, one namespace per node
// with its agent (own mount namespace via ip netns exec), and a client namespace; only
// 192.0.2.0/24 is used. TestTakeoverInNamespaces and BenchmarkTakeoverSteps use it.
//
// Invariants:
//
//   - Only 127.0.0.1 and the lab's own namespaces are ever addressed; the host's
//     interfaces, routes and namespaces are never touched.
//   - Every process the lab starts is a child of this process in its own process group
//     with PDEATHSIG SIGKILL, so a crashed test or an interrupted demo leaves no agent
//     behind; a role's executable is the agent's child with PDEATHSIG as well (the exec
//     resource's rule), so killing an agent kills its services, like a crashed server.
//   - Farm.Close stops every process the farm started (SIGTERM, then SIGKILL after a
//     bound) and waits for each of them before it stops etcd.
//   - Every wait is bounded by the caller's context; polling (50 ms for the cluster
//     status, 10 ms for the services in benchmarks) is the lab's way of observing from
//     outside, never a synchronisation inside the product.
package lab
