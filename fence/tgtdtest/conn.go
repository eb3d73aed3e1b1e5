package tgtdtest

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// Conn is one iSCSI connection tgtd reports for the target.
type Conn struct {
	SID, CID  int
	Initiator string
}

// Connections lists the target's current iSCSI sessions/connections
// (tgtadm --op show --mode conn).
func (tg *Target) Connections() ([]Conn, error) {
	out, err := tg.Tgtadm("--lld", "iscsi", "--op", "show", "--mode", "conn", "--tid", strconv.Itoa(tid))
	if err != nil {
		return nil, err
	}
	return parseConns(out)
}

func parseConns(out string) ([]Conn, error) {
	var conns []Conn
	sid := -1
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch key {
		case "Session":
			n, err := strconv.Atoi(val)
			if err != nil {
				return nil, fmt.Errorf("tgtdtest: bad session line %q", line)
			}
			sid = n
		case "Connection":
			n, err := strconv.Atoi(val)
			if err != nil || sid < 0 {
				return nil, fmt.Errorf("tgtdtest: bad connection line %q", line)
			}
			conns = append(conns, Conn{SID: sid, CID: n})
		case "Initiator":
			if len(conns) > 0 {
				conns[len(conns)-1].Initiator = val
			}
		}
	}
	return conns, sc.Err()
}

// DropConnections makes tgtd close every iSCSI connection of the target
// (tgtadm --op delete --mode conn) and returns how many it dropped. To the
// initiator this looks like the TCP connection being reset by the target.
func (tg *Target) DropConnections() (int, error) {
	conns, err := tg.Connections()
	if err != nil {
		return 0, err
	}
	for _, c := range conns {
		if err := tg.DropConnection(c); err != nil {
			return 0, err
		}
	}
	return len(conns), nil
}

// DropConnection makes tgtd close one connection (see Connections).
func (tg *Target) DropConnection(c Conn) error {
	_, err := tg.Tgtadm("--lld", "iscsi", "--op", "delete", "--mode", "conn", "--tid", strconv.Itoa(tid),
		"--sid", strconv.Itoa(c.SID), "--cid", strconv.Itoa(c.CID))
	return err
}

// Pause stops tgtd with SIGSTOP: connections stay open but nothing is
// answered (a hung target). Resume continues it; Stop resumes it first.
func (tg *Target) Pause() error { return tg.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused tgtd (SIGCONT).
func (tg *Target) Resume() error { return tg.cmd.Process.Signal(syscall.SIGCONT) }

// PID is tgtd's process id.
func (tg *Target) PID() int { return tg.cmd.Process.Pid }
