package lab

// The scale bench's 3-member etcd (scale.go): the members as child processes, and the
// readings of their /proc and /metrics (and of this process and the machine) that give a Usage.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// scaleEtcd is a 3-member etcd cluster of `understudy lab etcd` child processes on
// 127.0.0.1, each in its own process group with PDEATHSIG SIGKILL (NetnsProcs with no
// namespace), so its CPU time and memory in /proc are its own.
type scaleEtcd struct {
	dir       string
	names     []string
	endpoints []string // client URLs, in names order
	pidOf     []int    // in names order, recorded at start
	procs     *NetnsProcs
	cli       *clientv3.Client
	http      *http.Client
	proc      procfs.FS // /proc
}

// startScaleEtcd starts the members and waits until each serves and knows a leader.
// On error everything started is stopped.
func startScaleEtcd(ctx context.Context, binary, dir string, timeout time.Duration, log *zap.Logger) (_ *scaleEtcd, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrEtcd, dir, err)
	}
	proc, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, fmt.Errorf("%w: the scale bench reads /proc: %w", ErrUnsupported, err)
	}
	ports, err := freePorts(2 * scaleMembers)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEtcd, err)
	}
	// No keep-alive: a scrape is rare, and an idle connection would outlive the run.
	e := &scaleEtcd{dir: dir, procs: NewNetnsProcs(), proc: proc,
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	var peers, cluster []string
	for i := range scaleMembers {
		e.names = append(e.names, fmt.Sprintf("m%d", i+1))
		client, peer := loopbackURL(ports[2*i]), loopbackURL(ports[2*i+1])
		e.endpoints = append(e.endpoints, client.String())
		peers = append(peers, peer.String())
		cluster = append(cluster, e.names[i]+"="+peer.String())
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, e.close())
		}
	}()
	for i, name := range e.names {
		argv := []string{binary, "lab", "etcd", "--name", name, "--dir", filepath.Join(dir, name),
			"--client-url", e.endpoints[i], "--peer-url", peers[i], "--initial-cluster", strings.Join(cluster, ",")}
		if err := e.procs.Start(name, "", argv, nil, e.logPath(name)); err != nil {
			return nil, fmt.Errorf("%w: member %s: %w", ErrEtcd, name, err)
		}
		e.pidOf = append(e.pidOf, e.procs.PID(name))
	}
	if e.cli, err = newScaleClient(e.endpoints, log); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := e.waitReady(wctx); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *scaleEtcd) logPath(name string) string { return filepath.Join(e.dir, name+".log") }

// exited reports a member that is no longer running, with its exit status.
func (e *scaleEtcd) exited() error {
	for _, name := range e.names {
		if e.procs.PID(name) == 0 {
			return fmt.Errorf("%w: member %s exited (%v); see %s", ErrEtcd, name, e.procs.ExitErr(name), e.logPath(name))
		}
	}
	return nil
}

// waitReady polls every member's status until each answers and names a leader.
func (e *scaleEtcd) waitReady(ctx context.Context) error {
	tick := time.NewTicker(scalePoll)
	defer tick.Stop()
	for {
		if err := e.exited(); err != nil {
			return err
		}
		var err error
		for _, ep := range e.endpoints {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, serr := e.cli.Status(sctx, ep)
			cancel()
			if serr == nil && resp.Leader == 0 {
				serr = errors.New("no leader yet")
			}
			err = cmp.Or(err, serr)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: wait until the members serve: %w (last: %w)", ErrEtcd, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// close stops the members (SIGTERM, SIGKILL after a bound) and waits until each is
// reaped; a member that had exited before is reported. Safe to call twice.
func (e *scaleEtcd) close() error {
	var errs []error
	if e.cli != nil {
		errs = append(errs, e.cli.Close())
		e.cli = nil
	}
	if len(e.pidOf) == scaleMembers {
		errs = append(errs, e.exited())
	}
	errs = append(errs, e.procs.Close())
	e.pidOf = nil
	return errors.Join(errs...)
}

func (e *scaleEtcd) pids() []int { return slices.Clone(e.pidOf) }

func (e *scaleEtcd) note() string {
	return fmt.Sprintf("sharing this machine's %d CPUs with the agents", runtime.NumCPU())
}

// leader names the member that is the raft leader.
func (e *scaleEtcd) leader(ctx context.Context) (string, error) {
	for i, ep := range e.endpoints {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := e.cli.Status(sctx, ep)
		cancel()
		if err != nil {
			return "", fmt.Errorf("lab: status of member %s: %w", e.names[i], err)
		}
		if resp.Leader == resp.Header.MemberId {
			return e.names[i], nil
		}
	}
	return "", fmt.Errorf("%w: no member is the leader", ErrEtcd)
}

// scaleSnap is one reading of the members' /proc and /metrics, this process and the
// machine, so that two of them give a Usage.
type scaleSnap struct {
	at      time.Time
	members []procSample
	self    procSample
	counts  []counters
	busy    float64 // machine CPU seconds not idle, all CPUs
	total   float64
}

type procSample struct {
	cpu      float64 // utime+stime seconds (procfs divides clock ticks by USER_HZ, 100 on Linux)
	rss, hwm uint64  // VmRSS, VmHWM in bytes
}

// counters are the members' cumulative /metrics values the bench reads.
type counters struct {
	keepalives, msgs, renewed, clientIn, clientOut, peerSent float64
}

func (e *scaleEtcd) snapshot(ctx context.Context) (*scaleSnap, error) {
	s := &scaleSnap{at: time.Now()}
	for i, pid := range e.pidOf {
		ps, err := sampleProc(e.proc, pid)
		if err != nil {
			return nil, fmt.Errorf("lab: member %s: %w", e.names[i], err)
		}
		c, err := e.scrape(ctx, e.endpoints[i])
		if err != nil {
			return nil, fmt.Errorf("lab: member %s: %w", e.names[i], err)
		}
		s.members, s.counts = append(s.members, ps), append(s.counts, c)
	}
	var err error
	if s.self, err = sampleProc(e.proc, os.Getpid()); err != nil {
		return nil, err
	}
	st, err := e.proc.Stat()
	if err != nil {
		return nil, fmt.Errorf("lab: read /proc/stat: %w", err)
	}
	c := st.CPUTotal
	s.busy = c.User + c.Nice + c.System + c.IRQ + c.SoftIRQ + c.Steal
	s.total = s.busy + c.Idle + c.Iowait
	return s, nil
}

func sampleProc(fs procfs.FS, pid int) (procSample, error) {
	p, err := fs.Proc(pid)
	if err != nil {
		return procSample{}, fmt.Errorf("read /proc/%d: %w", pid, err)
	}
	stat, err := p.Stat()
	if err != nil {
		return procSample{}, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	status, err := p.NewStatus()
	if err != nil {
		return procSample{}, fmt.Errorf("read /proc/%d/status: %w", pid, err)
	}
	return procSample{cpu: stat.CPUTime(), rss: status.VmRSS, hwm: status.VmHWM}, nil
}

// scrape reads the counters from a member's Prometheus endpoint (/metrics on its client
// URL).
func (e *scaleEtcd) scrape(ctx context.Context, endpoint string) (counters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/metrics", nil)
	if err != nil {
		return counters{}, fmt.Errorf("scrape %s/metrics: %w", endpoint, err)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return counters{}, fmt.Errorf("scrape %s/metrics: %w", endpoint, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return counters{}, fmt.Errorf("scrape %s/metrics: %s", endpoint, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return counters{}, fmt.Errorf("parse %s/metrics: %w", endpoint, err)
	}
	ka := map[string]string{"grpc_method": "LeaseKeepAlive"}
	return counters{
		keepalives: sumMetric(mfs, "grpc_server_handled_total", ka),
		msgs:       sumMetric(mfs, "grpc_server_msg_received_total", ka),
		renewed:    sumMetric(mfs, "etcd_debugging_lease_renewed_total", nil),
		clientIn:   sumMetric(mfs, "etcd_network_client_grpc_received_bytes_total", nil),
		clientOut:  sumMetric(mfs, "etcd_network_client_grpc_sent_bytes_total", nil),
		peerSent:   sumMetric(mfs, "etcd_network_peer_sent_bytes_total", nil),
	}, nil
}

// sumMetric adds the values of the series of a counter (or untyped) family whose labels
// include want.
func sumMetric(mfs map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range mfs[name].GetMetric() {
		n := 0
		for _, lp := range m.GetLabel() {
			if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
				n++
			}
		}
		if n == len(want) {
			sum += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum
}

// usage is what happened between two snapshots.
func usage(a, b *scaleSnap, e *scaleEtcd) Usage {
	dt := b.at.Sub(a.at).Seconds()
	rate := func(x, y float64) float64 { return (y - x) / dt }
	u := Usage{Duration: b.at.Sub(a.at), AgentsCPUSeconds: b.self.cpu - a.self.cpu, AgentsRSSBytes: b.self.rss}
	u.AgentsCPUPercent = 100 * u.AgentsCPUSeconds / dt
	if d := b.total - a.total; d > 0 {
		u.MachineBusyPercent = 100 * (b.busy - a.busy) / d
	}
	for i := range b.members {
		m := MemberUsage{Name: e.names[i], PID: e.pidOf[i], CPUSeconds: b.members[i].cpu - a.members[i].cpu,
			RSSBytes: b.members[i].rss, PeakRSSBytes: b.members[i].hwm,
			Keepalives: rate(a.counts[i].keepalives, b.counts[i].keepalives)}
		m.CPUPercent = 100 * m.CPUSeconds / dt
		u.Members = append(u.Members, m)
		u.EtcdCPUSeconds += m.CPUSeconds
		x, y := a.counts[i], b.counts[i]
		t := &u.Traffic
		t.Keepalives += rate(x.keepalives, y.keepalives)
		t.KeepaliveMsgs += rate(x.msgs, y.msgs)
		t.Renewed += rate(x.renewed, y.renewed)
		t.ClientInBytes += rate(x.clientIn, y.clientIn)
		t.ClientOutBytes += rate(x.clientOut, y.clientOut)
		t.PeerSentBytes += rate(x.peerSent, y.peerSent)
	}
	u.EtcdCPUPercent = 100 * u.EtcdCPUSeconds / dt
	return u
}
