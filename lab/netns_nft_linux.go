//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// nftTable is the table Partition creates in a node's namespace; Heal deletes it. Only
// the node's own namespace is ever touched.
const nftTable = "usl_partition"

// Partition drops, inside node name's namespace, every packet it receives or sends on
// the given networks (NetClient, NetControl, NetSAN) and every packet to or from the
// given addresses: a network partition, not a link failure (the links keep carrier,
// ARP is still answered, TCP connections hang rather than reset). It replaces any
// partition the node had.
func (n *Netns) Partition(ctx context.Context, name string, nets []string, addrs []string) error {
	h, err := n.Node(name)
	if err != nil {
		return err
	}
	var in, out []string
	for _, ln := range h.nets {
		for _, want := range nets {
			if ln.name == want {
				in = append(in, fmt.Sprintf("iifname %q drop", ln.ifname))
				out = append(out, fmt.Sprintf("oifname %q drop", ln.ifname))
			}
		}
	}
	if len(addrs) > 0 {
		set := strings.Join(addrs, ", ")
		in = append(in, fmt.Sprintf("ip saddr { %s } drop", set))
		out = append(out, fmt.Sprintf("ip daddr { %s } drop", set))
	}
	if len(in) == 0 {
		return fmt.Errorf("%w: partition of %s: no network or address given", ErrInvalidOption, name)
	}
	rules := fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	chain in { type filter hook input priority -10; policy accept; %[2]s; }
	chain out { type filter hook output priority -10; policy accept; %[3]s; }
}
`, nftTable, strings.Join(in, "; "), strings.Join(out, "; "))
	return nft(ctx, h.NS, rules)
}

// Heal removes node name's partition, if any.
func (n *Netns) Heal(ctx context.Context, name string) error {
	h, err := n.Node(name)
	if err != nil {
		return err
	}
	return nft(ctx, h.NS, fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", nftTable))
}

func nft(ctx context.Context, ns, script string) error {
	cctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("lab: nft in %s: %w: %s", ns, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
