//go:build linux

package lab

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// etcdMember is one member of the lab's etcd: its process name in the farm's infra, its
// namespace and its URLs.
type etcdMember struct {
	name, ns, client, peer string
	tlsArgs                []string // Secure: the member's `lab etcd` TLS flags
}

// etcdMembers lists the members Options.EtcdMembers asks for: "etcd" in <prefix>-etcd at
// 198.51.100.1 and, for three, "etcd2" and "etcd3" at .2 and .3.
func (f *Farm) etcdMembers() []etcdMember {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members
}

// startEtcdMembers creates the members' namespaces and starts them (concurrently: a
// member of a static cluster waits for a quorum before it serves).
func (f *Farm) startEtcdMembers(ctx context.Context) error {
	hosts := []NetnsHost{f.net.Etcd()}
	for i := 2; i <= f.opts.EtcdMembers; i++ {
		h, err := f.net.AddEtcdHost(ctx, i)
		if err != nil {
			return err
		}
		hosts = append(hosts, h)
	}
	scheme := "http://"
	if f.secure != nil {
		scheme = "https://"
	}
	var members []etcdMember
	var cluster []string
	for i, h := range hosts {
		m := etcdMember{name: "etcd", ns: h.NS,
			client: scheme + net.JoinHostPort(h.Ctl, fmt.Sprint(NetnsEtcdClientPort)),
			peer:   "http://" + net.JoinHostPort(h.Ctl, fmt.Sprint(netnsEtcdPeerPort))}
		if i > 0 {
			m.name = fmt.Sprintf("etcd%d", i+1)
		}
		if f.secure != nil {
			var err error
			if m.tlsArgs, err = f.memberTLS(m, h.Ctl); err != nil {
				return err
			}
		}
		members = append(members, m)
		cluster = append(cluster, m.name+"="+m.peer)
		f.endpoints = append(f.endpoints, m.client)
	}
	f.mu.Lock()
	f.members = members
	f.mu.Unlock()
	for _, m := range members {
		if err := f.startEtcdMember(m, strings.Join(cluster, ",")); err != nil {
			return err
		}
	}
	return nil
}

func (f *Farm) startEtcdMember(m etcdMember, cluster string) error {
	argv := []string{f.opts.Binary, "lab", "etcd", "--name", m.name, "--dir", filepath.Join(f.dir, m.name),
		"--client-url", m.client, "--peer-url", m.peer}
	if f.opts.EtcdMembers > 1 && cluster != "" {
		argv = append(argv, "--initial-cluster", cluster)
	}
	argv = append(argv, m.tlsArgs...)
	return f.infra.Start(m.name, m.ns, argv, nil, filepath.Join(f.dir, m.name+".log"))
}

func (f *Farm) etcdMember(name string) (etcdMember, error) {
	for _, m := range f.etcdMembers() {
		if m.name == name {
			return m, nil
		}
	}
	return etcdMember{}, fmt.Errorf("%w: no etcd member %q", ErrInvalidOption, name)
}

// EtcdMemberNames names the lab's etcd members ("etcd", "etcd2", "etcd3").
func (f *Farm) EtcdMemberNames() []string {
	var names []string
	for _, m := range f.etcdMembers() {
		names = append(names, m.name)
	}
	return names
}

// EtcdLeader names the member that is the raft leader now.
func (f *Farm) EtcdLeader(ctx context.Context) (string, error) {
	var last error
	for _, m := range f.etcdMembers() {
		if f.infra.PID(m.name) == 0 {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := f.cli.Status(sctx, m.client)
		cancel()
		if err != nil {
			last = err
			continue
		}
		if resp.Leader == resp.Header.MemberId {
			return m.name, nil
		}
	}
	return "", fmt.Errorf("%w: no member is the leader (last error: %v)", ErrEtcd, last)
}

// EtcdKill kills member name with SIGKILL (a crashed etcd server) and returns when.
func (f *Farm) EtcdKill(name string) (time.Time, error) {
	if _, err := f.etcdMember(name); err != nil {
		return time.Time{}, err
	}
	return f.infra.Kill(name)
}

// EtcdSignal sends sig to member name (SIGSTOP/SIGCONT: a hung server).
func (f *Farm) EtcdSignal(name string, sig syscall.Signal) (time.Time, error) {
	if _, err := f.etcdMember(name); err != nil {
		return time.Time{}, err
	}
	return f.infra.Signal(name, sig)
}

// EtcdRestart starts a killed member again on its data directory (it rejoins the
// cluster it was part of).
func (f *Farm) EtcdRestart(name string) error {
	m, err := f.etcdMember(name)
	if err != nil {
		return err
	}
	return f.startEtcdMember(m, "")
}

// EtcdHealthy checks that every member answers a status request.
func (f *Farm) EtcdHealthy(ctx context.Context) error {
	for _, m := range f.etcdMembers() {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := f.cli.Status(sctx, m.client)
		cancel()
		if err != nil {
			return fmt.Errorf("%w: member %s: %w", ErrEtcd, m.name, err)
		}
	}
	return nil
}
