package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.yaml.in/yaml/v3"
)

// Spec is the cluster spec (cluster.yaml): the roles and how failover treats them. It is
// stored as the YAML text exactly as applied; ParseSpec is the only way in, so every
// stored spec has its defaults applied and has passed Validate.
type Spec struct {
	Roles           []RoleSpec `yaml:"roles" json:"roles"`
	MaxRolesPerNode int        `yaml:"max_roles_per_node" json:"max_roles_per_node"` // default 1, >= 1
	Failback        bool       `yaml:"failback" json:"failback"`                     // default false
	// EtcdOutage is what an active node does when it cannot reach etcd: demote (stop its
	// roles before its lease could expire; the default) or keep-running (keep serving
	// until it is fenced; only with SCSI fencing on every role, where the storage
	// itself rejects a fenced node's writes).
	EtcdOutage string `yaml:"etcd_outage" json:"etcd_outage"`
	// Heartbeat tunes fast detection (roles with detection: fast).
	Heartbeat HeartbeatSpec `yaml:"heartbeat" json:"heartbeat"`
}

// Values of RoleSpec.Detection.
const (
	// DetectLease: a holder is dead when etcd expires its lease (TTL + up to 500 ms).
	DetectLease = "lease"
	// DetectFast: a holder is dead when its peer heartbeats stop for Heartbeat.Misses
	// intervals and a second check of it fails; the standby fences it, revokes its
	// lease and takes over without waiting for the expiry. Needs scsi or agent fencing.
	DetectFast = "fast"
)

// HeartbeatSpec: holders of fast-detected roles send a heartbeat every Interval; a
// standby suspects a holder after Misses intervals without one.
type HeartbeatSpec struct {
	Interval Duration `yaml:"interval" json:"interval"` // default 50ms
	Misses   int      `yaml:"misses" json:"misses"`     // default 4
}

// Window is how long a holder may stay silent before it is suspected.
func (h HeartbeatSpec) Window() time.Duration { return time.Duration(h.Misses) * h.Interval.Std() }

// HasFast reports whether any role uses fast detection.
func (s *Spec) HasFast() bool {
	for _, r := range s.Roles {
		if r.Detection == DetectFast {
			return true
		}
	}
	return false
}

// RoleSpec is one role: storage + executable + floating IP (+ health check), and how to
// fence its previous holder. Nil parts are not used by the role; a nil Fence means none.
type RoleSpec struct {
	Name      string       `yaml:"name" json:"name"` // [a-z0-9][a-z0-9-]{0,62}
	Preferred []string     `yaml:"preferred_nodes" json:"preferred_nodes,omitempty"`
	Fence     *FenceSpec   `yaml:"fence" json:"fence,omitempty"`
	Storage   *StorageSpec `yaml:"storage" json:"storage,omitempty"`
	Exec      *ExecSpec    `yaml:"exec" json:"exec,omitempty"`
	VIP       *VIPSpec     `yaml:"vip" json:"vip,omitempty"`
	Health    *HealthSpec  `yaml:"health" json:"health,omitempty"`
	// Detection is how standbys find that the holder died: lease (default) or fast.
	Detection string `yaml:"detection" json:"detection,omitempty"`
}

// Values of Spec.EtcdOutage.
const (
	OutageDemote      = "demote"
	OutageKeepRunning = "keep-running"
)

// Fence methods.
const (
	FenceNone  = "none"
	FenceSCSI  = "scsi"
	FenceAgent = "agent"
)

// FenceSpec says how the next holder fences the previous one.
type FenceSpec struct {
	Method  string          `yaml:"method" json:"method"`             // none|scsi|agent
	Devices [][]string      `yaml:"devices" json:"devices,omitempty"` // scsi: per LUN, its paths (/dev/... or iscsi://...)
	Agent   *FenceAgentSpec `yaml:"agent" json:"agent,omitempty"`     // agent: the fence-agents program
}

// FenceAgentSpec is a fence-agents program (fence_ipmilan, fence_virsh, ...) driven
// through its stdin key=value protocol.
type FenceAgentSpec struct {
	Path    string            `yaml:"path" json:"path"`
	Args    map[string]string `yaml:"args" json:"args,omitempty"`
	Plugs   map[string]string `yaml:"plugs" json:"plugs,omitempty"` // node -> plug
	Timeout Duration          `yaml:"timeout" json:"timeout"`       // default 30s
}

// StorageSpec is the file system a role mounts.
type StorageSpec struct {
	Device     string `yaml:"device" json:"device"` // /dev/..., UUID=..., LABEL=..., WWN=... or iscsi://...
	FSType     string `yaml:"fstype" json:"fstype"`
	Mountpoint string `yaml:"mountpoint" json:"mountpoint"`
	Options    string `yaml:"options" json:"options,omitempty"`
	Fsck       string `yaml:"fsck" json:"fsck"` // none|preen|check (default preen)
}

// ExecSpec is the executable a role runs.
type ExecSpec struct {
	Command       []string          `yaml:"command" json:"command"` // argv, absolute path or PATH lookup
	Dir           string            `yaml:"dir" json:"dir,omitempty"`
	Env           map[string]string `yaml:"env" json:"env,omitempty"`
	User          string            `yaml:"user" json:"user,omitempty"`
	StopSignal    string            `yaml:"stop_signal" json:"stop_signal"`       // TERM (default)|INT|HUP|QUIT|USR1|USR2|KILL
	StopTimeout   Duration          `yaml:"stop_timeout" json:"stop_timeout"`     // default 10s
	Restarts      int               `yaml:"restarts" json:"restarts"`             // local restarts before release; default 3
	RestartWindow Duration          `yaml:"restart_window" json:"restart_window"` // default 60s
	Check         []string          `yaml:"check" json:"check,omitempty"`         // optional qualification check argv
}

// VIPSpec is a role's floating IP.
type VIPSpec struct {
	Address   string `yaml:"address" json:"address"` // prefix, v4 or v6: 10.0.0.10/24
	Interface string `yaml:"interface" json:"interface"`
	Label     string `yaml:"label" json:"label,omitempty"`
	// TestAddress, optional, is a spare address qualification adds to and removes from the
	// interface, proving the node can take an address there without touching the VIP.
	TestAddress string `yaml:"test_address" json:"test_address,omitempty"`
}

// Health check types.
const (
	HealthTCP  = "tcp"
	HealthHTTP = "http"
	HealthExec = "exec"
)

// HealthSpec is how to tell that a role's service works.
type HealthSpec struct {
	Type             string   `yaml:"type" json:"type"`                           // tcp|http|exec
	Target           string   `yaml:"target" json:"target,omitempty"`             // host:port or URL
	Command          []string `yaml:"command" json:"command,omitempty"`           // exec
	Interval         Duration `yaml:"interval" json:"interval"`                   // default 1s
	Timeout          Duration `yaml:"timeout" json:"timeout"`                     // default 1s
	FailureThreshold int      `yaml:"failure_threshold" json:"failure_threshold"` // default 3
	StartTimeout     Duration `yaml:"start_timeout" json:"start_timeout"`         // default 30s
}

// ParseSpec decodes text strictly (unknown fields and duplicate keys are errors, with
// their line), applies defaults and validates. Every error wraps ErrInvalidSpec.
func ParseSpec(text []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(text))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: the spec is empty", ErrInvalidSpec)
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: want exactly one YAML document", ErrInvalidSpec)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Spec reads and parses the applied cluster spec and returns it with its ModRevision
// (pass that to PutSpec as expectRev). ErrNoSpec if none was applied.
func (s *Store) Spec(ctx context.Context) (*Spec, int64, error) {
	resp, err := s.cli.Get(ctx, s.key(keySpec))
	if err != nil {
		return nil, 0, fmt.Errorf("lease: read cluster spec: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, ErrNoSpec
	}
	kv := resp.Kvs[0]
	spec, err := ParseSpec(kv.Value)
	if err != nil {
		return nil, kv.ModRevision, fmt.Errorf("lease: stored cluster spec (revision %d): %w", kv.ModRevision, err)
	}
	return spec, kv.ModRevision, nil
}

// PutSpec parses and validates text, then stores it exactly as given if the stored spec's
// ModRevision still equals expectRev (0: no spec stored yet), else ErrSpecConflict.
// Nothing is written if text is invalid. It returns the parsed spec and its new revision.
//
// WARNING: force skips the revision check and overwrites whatever another operator
// applied meanwhile; use it only to repair a spec, not in scripts.
func (s *Store) PutSpec(ctx context.Context, text []byte, expectRev int64, force bool) (*Spec, int64, error) {
	spec, err := ParseSpec(text)
	if err != nil {
		return nil, 0, err
	}
	key := s.key(keySpec)
	txn := s.cli.Txn(ctx)
	if !force {
		txn = txn.If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev))
	}
	resp, err := txn.Then(clientv3.OpPut(key, string(text))).Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return nil, 0, fmt.Errorf("lease: put cluster spec: %w", err)
	}
	if !resp.Succeeded {
		cur := int64(0)
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			cur = kvs[0].ModRevision
		}
		return nil, 0, fmt.Errorf("lease: put cluster spec: expected revision %d, stored is %d: %w",
			expectRev, cur, ErrSpecConflict)
	}
	return spec, resp.Header.Revision, nil
}

// Role returns the spec of the role called name.
func (s *Spec) Role(name string) (*RoleSpec, bool) {
	for i := range s.Roles {
		if s.Roles[i].Name == name {
			return &s.Roles[i], true
		}
	}
	return nil, false
}

// The UnmarshalYAML methods below fill in defaults before decoding, so that a field the
// user left out gets its default while one written explicitly (restarts: 0, or an
// invalid stop_timeout: 0s) is kept and validated. They use the decoder's own unmarshal
// function, which keeps KnownFields strictness for the nested fields.

// UnmarshalYAML implements yaml's (obsolete) Unmarshaler with defaults.
func (s *Spec) UnmarshalYAML(unmarshal func(any) error) error {
	type spec Spec
	v := spec{MaxRolesPerNode: 1, EtcdOutage: OutageDemote,
		Heartbeat: HeartbeatSpec{Interval: Duration(50 * time.Millisecond), Misses: 4}}
	if err := unmarshal(&v); err != nil {
		return err
	}
	*s = Spec(v)
	return nil
}

// UnmarshalYAML implements yaml's (obsolete) Unmarshaler with defaults.
func (f *FenceAgentSpec) UnmarshalYAML(unmarshal func(any) error) error {
	type fenceAgent FenceAgentSpec
	v := fenceAgent{Timeout: Duration(30 * time.Second)}
	if err := unmarshal(&v); err != nil {
		return err
	}
	*f = FenceAgentSpec(v)
	return nil
}

// UnmarshalYAML implements yaml's (obsolete) Unmarshaler with defaults.
func (st *StorageSpec) UnmarshalYAML(unmarshal func(any) error) error {
	type storage StorageSpec
	v := storage{Fsck: "preen"}
	if err := unmarshal(&v); err != nil {
		return err
	}
	*st = StorageSpec(v)
	return nil
}

// UnmarshalYAML implements yaml's (obsolete) Unmarshaler with defaults.
func (e *ExecSpec) UnmarshalYAML(unmarshal func(any) error) error {
	type exec ExecSpec
	v := exec{
		StopSignal:    "TERM",
		StopTimeout:   Duration(10 * time.Second),
		Restarts:      3,
		RestartWindow: Duration(60 * time.Second),
	}
	if err := unmarshal(&v); err != nil {
		return err
	}
	*e = ExecSpec(v)
	return nil
}

// UnmarshalYAML implements yaml's (obsolete) Unmarshaler with defaults.
func (h *HealthSpec) UnmarshalYAML(unmarshal func(any) error) error {
	type health HealthSpec
	v := health{
		Interval:         Duration(time.Second),
		Timeout:          Duration(time.Second),
		FailureThreshold: 3,
		StartTimeout:     Duration(30 * time.Second),
	}
	if err := unmarshal(&v); err != nil {
		return err
	}
	*h = HealthSpec(v)
	return nil
}

// Duration is a time.Duration written as a Go duration string ("500ms", "3s", "1m30s")
// in YAML and JSON.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String returns d as a Go duration string.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string; a bare number is an error (no implicit unit).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 500ms or 3s", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 500ms, 3s, 1m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"3s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %q is not a duration (want e.g. 500ms, 3s, 1m)", s)
	}
	*d = Duration(v)
	return nil
}
