// Package lab runs a whole understudy cluster on one machine, for `understudy demo`,
// `understudy bench` and the end-to-end tests: an embedded etcd in this process, and one
// real `understudy agent` child process per node, driven from outside exactly as an
// operator would (SIGKILL to simulate a crash, the CLI for operator actions).
//
// This first version has no network namespaces and no SCSI: everything listens on
// 127.0.0.1, and every role is a `understudy demo-service` on its own loopback port, so
// a client (Probe) sees which node and which tenure (fencing token) serves it.
//
// Invariants:
//
//   - Only 127.0.0.1 is ever addressed: etcd, the agents' health endpoints and the demo
//     services all listen on loopback ports chosen free at start.
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
