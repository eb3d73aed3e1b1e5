package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/understudy-ha/understudy/lease"
)

// probeTimeout bounds one HTTP request to a demo service.
const probeTimeout = time.Second

// demoStopTimeout is the demo services' exec stop_timeout: they exit on SIGTERM at once,
// so a long timeout would only slow down a lab whose service hangs.
const demoStopTimeout = "3s"

// Role is one lab role: a `understudy demo-service` on its own loopback port, or in
// Netns mode on port 8080 of its floating IP, with a LUN of the lab's SAN as storage.
type Role struct {
	Name      string
	Preferred []string
	Port      int
	VIP       string // Netns mode: the floating IP (client network)
	Storage   string // Netns mode: the LUN's iSCSI URL
	Mount     string // Netns mode: the mountpoint, also the demo service's --data
	LUNFile   string // Netns mode: the LUN's backing file on the SAN host (read it with the LUN idle)
}

// Addr is the role's service address, 127.0.0.1:<port> or <VIP>:<port>.
func (r Role) Addr() string {
	if r.VIP != "" {
		return net.JoinHostPort(r.VIP, strconv.Itoa(r.Port))
	}
	return "127.0.0.1:" + strconv.Itoa(r.Port)
}

// netnsRolePort is every role's service port in Netns mode (each role has its own IP).
const netnsRolePort = 8080

// netnsFirstVIP is the host number of the first role's VIP (192.0.2.50 on).
const netnsFirstVIP = 50

// Reply is what a demo service answers: which role, node, tenure and process served.
type Reply struct {
	Role  string `json:"role"`
	Node  string `json:"node"`
	Token int64  `json:"token"`
	PID   int    `json:"pid"`
}

func (r Reply) String() string {
	return fmt.Sprintf("%s (token %d, pid %d)", r.Node, r.Token, r.PID)
}

// AddRole defines a role with a free service port (Netns mode: the next VIP and a new
// LUN), or returns the existing definition. Roles are in the spec in the order they
// were added.
func (f *Farm) AddRole(ctx context.Context, name string, preferred ...string) (Role, error) {
	if err := lease.CheckRoleName(name); err != nil {
		return Role{}, fmt.Errorf("lab: add role: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.roles[name]; ok {
		return r, nil
	}
	r := Role{Name: name, Preferred: preferred}
	if f.opts.Netns {
		if len(f.order) >= netnsClientHost-netnsFirstVIP {
			return Role{}, fmt.Errorf("%w: role %s: the lab has room for %d roles", ErrInvalidOption, name, netnsClientHost-netnsFirstVIP)
		}
		lun, err := f.san.addLUN(ctx)
		if err != nil {
			return Role{}, fmt.Errorf("lab: role %s: %w", name, err)
		}
		r.Port, r.VIP = netnsRolePort, fmt.Sprintf("192.0.2.%d", netnsFirstVIP+len(f.order))
		r.Storage, r.Mount = f.san.url(NetnsSANAddr, lun), filepath.Join(f.dir, "mnt", name)
		r.LUNFile = f.san.file(lun)
		if err := os.MkdirAll(r.Mount, 0o755); err != nil {
			return Role{}, fmt.Errorf("lab: role %s: mountpoint: %w", name, err)
		}
	} else {
		ports, err := freePorts(1)
		if err != nil {
			return Role{}, fmt.Errorf("lab: role %s: %w", name, err)
		}
		r.Port = ports[0]
	}
	f.roles[name] = r
	f.order = append(f.order, name)
	return r, nil
}

// DemoRoles defines the seed's roles: role-a, role-b and role-c, preferring nodes a, b
// and c.
func (f *Farm) DemoRoles(ctx context.Context) ([]Role, error) {
	var roles []Role
	for _, n := range []string{"a", "b", "c"} {
		r, err := f.AddRole(ctx, "role-"+n, n)
		if err != nil {
			return nil, err
		}
		roles = append(roles, r)
	}
	return roles, nil
}

// Role returns a defined role.
func (f *Farm) Role(name string) (Role, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.roles[name]
	if !ok {
		return Role{}, fmt.Errorf("%w: %s", ErrNoRole, name)
	}
	return r, nil
}

// specDoc is the subset of the cluster spec the lab writes (see lease.Spec).
type specDoc struct {
	MaxRolesPerNode int       `yaml:"max_roles_per_node"`
	Roles           []roleDoc `yaml:"roles"`
}

type roleDoc struct {
	Name      string      `yaml:"name"`
	Preferred []string    `yaml:"preferred_nodes,omitempty,flow"`
	Fence     *fenceDoc   `yaml:"fence,omitempty"`
	Storage   *storageDoc `yaml:"storage,omitempty"`
	Exec      execDoc     `yaml:"exec"`
	VIP       *vipDoc     `yaml:"vip,omitempty"`
	Health    *healthDoc  `yaml:"health,omitempty"`
	Detection string      `yaml:"detection,omitempty"`
}

type fenceDoc struct {
	Method  string     `yaml:"method"`
	Devices [][]string `yaml:"devices,flow"`
}

type storageDoc struct {
	Device     string `yaml:"device"`
	FSType     string `yaml:"fstype"`
	Mountpoint string `yaml:"mountpoint"`
}

type execDoc struct {
	Command     []string `yaml:"command,flow"`
	StopTimeout string   `yaml:"stop_timeout"`
}

type vipDoc struct {
	Address   string `yaml:"address"`
	Interface string `yaml:"interface"`
}

type healthDoc struct {
	Type     string `yaml:"type"`
	Target   string `yaml:"target"`
	Interval string `yaml:"interval"`
}

// SpecYAML is a cluster spec with every defined role, each running the farm's binary
// as `demo-service`: on 127.0.0.1:<port>, or in Netns mode on its VIP with its write log
// on the role's iSCSI LUN, fenced with SCSI-3 reservations and health-checked over HTTP.
func (f *Farm) SpecYAML(maxRolesPerNode int) ([]byte, error) {
	f.mu.Lock()
	doc := specDoc{MaxRolesPerNode: maxRolesPerNode}
	for _, name := range f.order {
		doc.Roles = append(doc.Roles, f.roleDoc(f.roles[name]))
	}
	f.mu.Unlock()
	text, err := yaml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("lab: encode spec: %w", err)
	}
	if _, err := lease.ParseSpec(text); err != nil {
		return nil, fmt.Errorf("lab: generated spec does not validate: %w", err)
	}
	return text, nil
}

func (f *Farm) roleDoc(r Role) roleDoc {
	d := roleDoc{Name: r.Name, Preferred: r.Preferred, Exec: execDoc{
		Command:     []string{f.opts.Binary, "demo-service", "--listen", r.Addr()},
		StopTimeout: demoStopTimeout,
	}}
	if r.VIP == "" {
		return d
	}
	listen := net.JoinHostPort("0.0.0.0", strconv.Itoa(r.Port))
	d.Exec.Command = []string{f.opts.Binary, "demo-service", "--listen", listen, "--data", r.Mount}
	d.Fence = &fenceDoc{Method: "scsi", Devices: [][]string{{r.Storage}}}
	d.Storage = &storageDoc{Device: r.Storage, FSType: "ext4", Mountpoint: r.Mount}
	d.VIP = &vipDoc{Address: r.VIP + "/24", Interface: "eth0"}
	d.Health = &healthDoc{Type: "http", Target: "http://" + r.Addr() + "/healthz", Interval: "200ms"}
	if f.opts.Detection == lease.DetectFast {
		d.Detection = lease.DetectFast
	}
	return d
}

// Probe asks role's service who serves it. Each probe is a new connection, so it always
// reaches whichever process listens on the port now.
func (f *Farm) Probe(ctx context.Context, role string) (Reply, error) {
	r, err := f.Role(role)
	if err != nil {
		return Reply{}, err
	}
	return f.probe(ctx, r.Addr())
}

func (f *Farm) probe(ctx context.Context, addr string) (Reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return Reply{}, fmt.Errorf("lab: probe %s: %w", addr, err)
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return Reply{}, fmt.Errorf("lab: probe %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return Reply{}, fmt.Errorf("lab: probe %s: read: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Reply{}, fmt.Errorf("lab: probe %s: HTTP %d: %q", addr, resp.StatusCode, body)
	}
	var rep Reply
	if err := json.Unmarshal(body, &rep); err != nil {
		return Reply{}, fmt.Errorf("lab: probe %s: decode %q: %w", addr, body, err)
	}
	return rep, nil
}

// WaitServed probes role every interval until an answer satisfies ok, and returns that
// answer and when it arrived (monotonic clock). Errors (nothing listening yet) are
// retried until ctx ends; the error then wraps ErrWait and shows the last answer.
func (f *Farm) WaitServed(ctx context.Context, role string, interval time.Duration, ok func(Reply) bool) (Reply, time.Time, error) {
	r, err := f.Role(role)
	if err != nil {
		return Reply{}, time.Time{}, err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last string
	for {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		rep, err := f.probe(pctx, r.Addr())
		cancel()
		at := time.Now()
		switch {
		case err == nil && ok(rep):
			return rep, at, nil
		case err == nil:
			last = "answered by " + rep.String()
		default:
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return Reply{}, time.Time{}, fmt.Errorf("%w: role %s served as expected on %s: %w; last: %s",
				ErrWait, role, r.Addr(), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// ServedBy probes every defined role once and returns who answered, for WriteStatus.
func (f *Farm) ServedBy(ctx context.Context) map[string]string {
	f.mu.Lock()
	names := append([]string(nil), f.order...)
	f.mu.Unlock()
	out := make(map[string]string, len(names))
	for _, name := range names {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout/2)
		rep, err := f.Probe(pctx, name)
		cancel()
		if err != nil {
			out[name] = "(no answer)"
			continue
		}
		out[name] = rep.String()
	}
	return out
}
