//go:build linux

package lab

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// The lab's SAN: one tgtd in the SAN namespace, one iSCSI target with one LUN per role,
// each LUN a sparse file under the lab's directory formatted with ext4.
const (
	sanPort    = 3260
	lunSize    = 64 << 20
	tgtdSocket = "/var/run/tgtd/socket." // + control port: tgtd's IPC socket
	tgtdWait   = 15 * time.Second
)

type san struct {
	dir  string // LUN files
	iqn  string
	ctl  int // tgtd control port (names its IPC socket, not a TCP port)
	luns int
}

// startSAN runs tgtd in ns under procs (name "tgtd") with a portal on addr, and creates
// the empty target.
func startSAN(ctx context.Context, procs *NetnsProcs, ns, addr, dir, prefix string) (*san, error) {
	s := &san{dir: dir, iqn: "iqn.2026-11.org.understudy:" + prefix}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab: san dir: %w", err)
	}
	// The control port only names a unix socket shared by every tgtd on this machine:
	// pick one no other tgtd uses.
	for range 100 {
		s.ctl = 10000 + rand.IntN(22000) // tgtd refuses -C values above 32767
		_, err1 := os.Stat(tgtdSocket + strconv.Itoa(s.ctl))
		_, err2 := os.Stat(tgtdSocket + strconv.Itoa(s.ctl) + ".lock")
		if os.IsNotExist(err1) && os.IsNotExist(err2) {
			break
		}
	}
	argv := []string{"tgtd", "-f", "-C", strconv.Itoa(s.ctl), "--iscsi", fmt.Sprintf("portal=%s:%d", addr, sanPort)}
	if err := procs.Start("tgtd", ns, argv, nil, filepath.Join(dir, "tgtd.log")); err != nil {
		return nil, err
	}
	exited, err := procs.Exited("tgtd")
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(ctx, exited); err != nil {
		return nil, err
	}
	for _, step := range [][]string{
		{"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", s.iqn},
		{"--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if _, err := s.tgtadm(ctx, step...); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *san) waitReady(ctx context.Context, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, tgtdWait)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, err := s.tgtadm(ctx, "--op", "show", "--mode", "system")
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("lab: tgtd exited during start-up; see %s", filepath.Join(s.dir, "tgtd.log"))
		case <-ctx.Done():
			return fmt.Errorf("%w: tgtd on control port %d ready: %w (last: %v)", ErrWait, s.ctl, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// addLUN creates the next LUN: a sparse file with a fresh ext4, exported as LUN n
// (n from 1). It returns n.
func (s *san) addLUN(ctx context.Context) (int, error) {
	n := s.luns + 1
	file := s.file(n)
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		return 0, fmt.Errorf("lab: lun %d: %w", n, err)
	}
	if err := os.Truncate(file, lunSize); err != nil {
		return 0, fmt.Errorf("lab: lun %d: %w", n, err)
	}
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", file).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("lab: lun %d: mkfs.ext4: %w: %s", n, err, bytes.TrimSpace(out))
	}
	if _, err := s.tgtadm(ctx, "--lld", "iscsi", "--op", "new", "--mode", "logicalunit",
		"--tid", "1", "--lun", strconv.Itoa(n), "-b", file); err != nil {
		return 0, err
	}
	s.luns = n
	return n, nil
}

// file is LUN n's backing file.
func (s *san) file(n int) string { return filepath.Join(s.dir, fmt.Sprintf("lun%d.img", n)) }

// url is LUN n's iSCSI URL, as a role's storage device and fence path.
func (s *san) url(addr string, n int) string {
	return fmt.Sprintf("iscsi://%s:%d/%s/%d", addr, sanPort, s.iqn, n)
}

func (s *san) tgtadm(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	full := append([]string{"-C", strconv.Itoa(s.ctl)}, args...)
	out, err := exec.CommandContext(ctx, "tgtadm", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lab: tgtadm %v: %w: %s", full, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// removeTgtdSocket removes what a killed tgtd leaves in /var/run/tgtd.
func removeTgtdSocket(ctl int) {
	if ctl == 0 {
		return
	}
	p := tgtdSocket + strconv.Itoa(ctl)
	_ = os.Remove(p)
	_ = os.Remove(p + ".lock")
}
