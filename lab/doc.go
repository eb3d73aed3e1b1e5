// Package lab runs a whole understudy cluster on one machine, for `understudy demo`,
// `understudy bench`, `understudy lab up|down|status` and the end-to-end tests: real
// `understudy agent` processes, one per node, driven from outside exactly as an
// operator would (SIGKILL or links down to simulate a crash, the CLI for operator
// actions), and a client that sees which node and which tenure (fencing token) serves.
//
// A Farm runs in one of two modes:
//
//   - Netns (the default of the commands; root): a small data centre of network
//     namespaces (netns_linux.go): a switch with three bridges and no route out
//     (client 192.0.2.0/24 for VIPs, control 198.51.100.0/25 for etcd, SAN
//     198.51.100.128/25 for tgtd), etcd in its namespace (`understudy lab etcd`), tgtd in
//     the SAN namespace with one ext4 LUN per role, a client namespace, and one
//     namespace per node with its agent (own mount namespace via ip netns exec). Roles
//     have iSCSI storage fenced with SCSI-3 PR, a VIP, a health check, and demo-service
//     with a write log on the LUN (Writer, ReadWrites: zero lost writes is checked).
//   - loopback (no root): etcd embedded in this process, exec-only roles each on its own
//     127.0.0.1 port.
//
// Benchmarks measure the client's longest gap with a Poller (a request every 10 ms,
// overlapping); BenchKeepalived measures keepalived moving a VIP between two node
// namespaces the same way, for comparison (keepalived only moves an address);
// BenchScale runs many lightweight agents against a 3-member etcd.
//
// Invariants:
//
//   - Only 127.0.0.1 and the lab's own namespaces are ever addressed; the host's
//     interfaces, routes and namespaces are never touched.
//   - Every process a Farm starts is a child of the Farm's process with PDEATHSIG
//     SIGKILL, so a crashed test or an interrupted demo leaves no agent behind; a
//     role's executable is the agent's child with PDEATHSIG as well (the exec
//     resource's rule), so killing an agent kills its services, like a crashed server.
//   - Farm.Close stops every process the farm started (SIGTERM, then SIGKILL after a
//     bound) and waits for each before it stops tgtd and etcd and deletes the network.
//     A namespace farm records itself in lab.json, so `lab down` removes what a crashed
//     owner left (namespaces, loop devices, FUSE connections, tgtd's socket).
//   - Every wait is bounded by the caller's context; polling (50 ms for the cluster
//     status, 10 ms for the services in benchmarks) is the lab's way of observing from
//     outside, never a synchronisation inside the product.
package lab
