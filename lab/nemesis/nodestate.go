package nemesis

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/understudy-ha/understudy/lab"
)

// nodeState is what a node really runs, read from the system rather than asked of its
// agent: floating IPs on its client interface, role services in its namespace, and LUN
// file systems mounted in its agent's mount namespace. Each lists role names.
type nodeState struct {
	VIPs, Services, Mounts []string
}

func (s nodeState) String() string {
	return fmt.Sprintf("vips %v, services %v, mounts %v", s.VIPs, s.Services, s.Mounts)
}

// matches reports whether the node runs exactly the given roles' resources.
func (s nodeState) matches(roles []string) bool {
	want := slices.Sorted(slices.Values(roles))
	return slices.Equal(s.VIPs, want) && slices.Equal(s.Services, want) && slices.Equal(s.Mounts, want)
}

// readNodeState reads node's resources. roleOf maps a VIP address or a mountpoint to its
// role.
func readNodeState(ctx context.Context, f *lab.Farm, node string, roleOf map[string]string) (nodeState, error) {
	var st nodeState
	h, err := f.Net().Node(node)
	if err != nil {
		return st, err
	}
	addrs, err := f.Net().Addrs(ctx, h.NS)
	if err != nil {
		return st, err
	}
	for _, a := range addrs {
		if r, ok := roleOf[strings.SplitN(a, "/", 2)[0]]; ok {
			st.VIPs = append(st.VIPs, r)
		}
	}
	if st.Services, err = servicesIn(h.NS, roleOf); err != nil {
		return st, err
	}
	if pid := f.PID(node); pid != 0 {
		st.Mounts = mountsOf(pid, roleOf)
	}
	slices.Sort(st.VIPs)
	slices.Sort(st.Services)
	slices.Sort(st.Mounts)
	return st, nil
}

// servicesIn lists the roles of the demo services running in network namespace ns, by
// their --data directory.
func servicesIn(ns string, roleOf map[string]string) ([]string, error) {
	var want syscall.Stat_t
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		return nil, fmt.Errorf("nemesis: namespace %s: %w", ns, err)
	}
	netLink := fmt.Sprintf("net:[%d]", want.Ino)
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var roles []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || l != netLink {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmdline) == 0 { // gone, or a zombie
			continue
		}
		args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
		if !slices.Contains(args, "demo-service") {
			continue
		}
		if i := slices.Index(args, "--data"); i >= 0 && i+1 < len(args) {
			if r, ok := roleOf[args[i+1]]; ok {
				roles = append(roles, r)
			}
		}
	}
	return roles, nil
}

// mountsOf lists the roles whose mountpoint has a file system mounted in pid's mount
// namespace.
func mountsOf(pid int, roleOf map[string]string) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil
	}
	var roles []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if r, ok := roleOf[f[4]]; ok && !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles
}
