//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// Reaching into the lab's namespaces from this process: sockets made inside a
// namespace by a thread switched there only for the dial.

// DialContext returns a dial function whose sockets are created inside namespace ns, for
// an http.Transport or a gRPC dialer: a socket belongs to the namespace it was created
// in for its whole life, so only the dial itself runs on a switched thread.
func (n *Netns) DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		h, err := n.handle(ns)
		if err != nil {
			return nil, err
		}
		var c net.Conn
		err = inNetns(h, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("lab: dial %s %s from %s: %w", network, addr, ns, err)
		}
		return c, nil
	}
}

func (n *Netns) handle(ns string) (netns.NsHandle, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return netns.None(), fmt.Errorf("lab: namespace %s: lab network closed", ns)
	}
	if h, ok := n.handles[ns]; ok {
		return h, nil
	}
	h, err := netns.GetFromName(ns)
	if err != nil {
		return netns.None(), fmt.Errorf("lab: open namespace %s: %w", ns, err)
	}
	n.handles[ns] = h
	return h, nil
}

// inNetns runs f on a new goroutine whose OS thread is switched into ns, then switches
// it back. If switching back fails the thread stays locked, so the runtime ends it with
// the goroutine and no other code ever runs in the wrong namespace.
//
// WARNING: a thread that ends takes the PDEATHSIG of children it forked with it; that
// only happens on the restore failure above, which would be a kernel bug.
func inNetns(ns netns.NsHandle, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
