//go:build !linux

package lab

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Addresses of the lab network's fixed hosts (see netns_linux.go).
const (
	NetnsEtcdAddr   = "198.51.100.1"
	NetnsSANAddr    = "198.51.100.129"
	NetnsClientAddr = "192.0.2.100"
)

// NetnsHost is one host of the lab network.
type NetnsHost struct {
	NS   string
	Addr string
	Ctl  string
	SAN  string
	MAC  net.HardwareAddr
}

const netnsClientHost = 100

// Netns is a lab network of namespaces; Linux only.
type Netns struct{}

// NewNetns needs Linux network namespaces.
func NewNetns(context.Context, ...string) (*Netns, error) {
	return nil, fmt.Errorf("%w: network namespaces", ErrUnsupported)
}

// Close does nothing: no lab network exists here.
func (*Netns) Close() error { return nil }

// CleanupNetns needs Linux network namespaces.
func CleanupNetns(context.Context, string) error {
	return fmt.Errorf("%w: network namespaces", ErrUnsupported)
}

// NetnsProcs are processes in lab namespaces; Linux only.
type NetnsProcs struct{}

// NewNetnsProcs returns a set that cannot start anything here.
func NewNetnsProcs() *NetnsProcs { return &NetnsProcs{} }

// Close does nothing: nothing was started.
func (*NetnsProcs) Close() error { return nil }

// LoopsUnder finds none: loop devices are Linux's.
func LoopsUnder(string) []string { return nil }

// DetachLoops needs Linux loop devices.
func DetachLoops(string) ([]string, error) {
	return nil, fmt.Errorf("%w: loop devices", ErrUnsupported)
}

var errNoNetns = fmt.Errorf("%w: network namespaces", ErrUnsupported)

// AddNode needs Linux network namespaces.
func (*Netns) AddNode(context.Context, string) (NetnsHost, error) { return NetnsHost{}, errNoNetns }

// Node needs Linux network namespaces.
func (*Netns) Node(string) (NetnsHost, error) { return NetnsHost{}, errNoNetns }

// Prefix is empty: no lab network exists here.
func (*Netns) Prefix() string { return "" }

// Etcd is empty: no lab network exists here.
func (*Netns) Etcd() NetnsHost { return NetnsHost{} }

// SAN is empty: no lab network exists here.
func (*Netns) SAN() NetnsHost { return NetnsHost{} }

// Client is empty: no lab network exists here.
func (*Netns) Client() NetnsHost { return NetnsHost{} }

// SetLink needs Linux network namespaces.
func (*Netns) SetLink(context.Context, string, bool) error { return errNoNetns }

// SetLinkOn needs Linux network namespaces.
func (*Netns) SetLinkOn(context.Context, string, bool, ...string) error { return errNoNetns }

// Reboot needs Linux network namespaces.
func (*Netns) Reboot(context.Context, string) error { return errNoNetns }

// DialContext returns a dialer that always fails here.
func (*Netns) DialContext(string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errNoNetns }
}

// Start needs Linux.
func (*NetnsProcs) Start(string, string, []string, []string, string) error { return errNoNetns }

// Signal needs Linux.
func (*NetnsProcs) Signal(string, syscall.Signal) (time.Time, error) { return time.Time{}, errNoNetns }

// Stop does nothing: nothing was started.
func (*NetnsProcs) Stop(context.Context, string) error { return nil }

// Kill needs Linux.
func (*NetnsProcs) Kill(string) (time.Time, error) { return time.Time{}, errNoNetns }

// PID is 0: nothing runs.
func (*NetnsProcs) PID(string) int { return 0 }

// Exited needs Linux.
func (*NetnsProcs) Exited(string) (<-chan struct{}, error) { return nil, errNoNetns }

// ExitErr is nil: nothing ran.
func (*NetnsProcs) ExitErr(string) error { return nil }

// Addrs needs Linux network namespaces.
func (*Netns) Addrs(context.Context, string) ([]string, error) { return nil, errNoNetns }

// Partition needs Linux network namespaces (and nftables).
func (*Netns) Partition(context.Context, string, []string, []string) error { return errNoNetns }

// Heal needs Linux network namespaces.
func (*Netns) Heal(context.Context, string) error { return errNoNetns }
