package lab

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"

	"go.uber.org/zap"
)

// Ports of the etcd a Netns lab runs in its core namespace. Fixed: the namespace is the
// run's own, so nothing else can hold them.
const (
	NetnsEtcdClientPort = 2379
	netnsEtcdPeerPort   = 2380
)

// NetnsEtcdEndpoint is the client URL of the lab network's etcd (StartEtcdAt on
// NetnsEtcdAddr).
func NetnsEtcdEndpoint() string {
	return "http://" + net.JoinHostPort(NetnsEtcdAddr, fmt.Sprint(NetnsEtcdClientPort))
}

// StartEtcdAt starts an embedded single-member etcd with the lab's timing (see
// StartEtcd) serving clients on host:2379 and peers on host:2380, with its data in dir
// (created if missing). It is meant to run in a process inside a lab namespace, where
// host is that namespace's own address. It returns once the member serves clients.
func StartEtcdAt(ctx context.Context, dir, host string, log *zap.Logger) (*Etcd, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("%w: etcd host %q: want an IP address", ErrInvalidOption, host)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: data dir %s: %w", ErrEtcd, dir, err)
	}
	client := url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(NetnsEtcdClientPort))}
	peer := url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(netnsEtcdPeerPort))}
	return StartMember(ctx, Member{Dir: dir, Client: client, Peer: peer}, log)
}
