//go:build !linux

package lab

import (
	"context"
	"fmt"
	"net"
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
	MAC  net.HardwareAddr
}

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

// DetachLoops needs Linux loop devices.
func DetachLoops(string) ([]string, error) {
	return nil, fmt.Errorf("%w: loop devices", ErrUnsupported)
}
