// Package nemesis owns understudy's fault-injection suite: named scenarios (nemeses)
// run against a namespace lab (three etcd members, tgtd, five agents, three roles)
// while clients write to every role through its floating IP, and the checks that judge
// a run from evidence the product cannot fake:
//
//   - the clients' own record of acknowledged writes, against each role's write log
//     read through its service and, at the end, straight from the LUN's backing file;
//   - the fencing tokens in that log, which must never go backwards (a write from a
//     fenced node accepted by the target would);
//   - ARP answers for every VIP seen from the client namespace, against the holder etcd
//     names;
//   - every node's floating IPs, services and mounts, against the roles it holds;
//   - the gaps in the clients' successful requests, against each scenario's bound.
//
// Schedules are randomised from a seed that every report prints, so a failing run can
// be replayed with --seed.
package nemesis
