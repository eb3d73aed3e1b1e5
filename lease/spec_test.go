package lease

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

const fullSpec = `
max_roles_per_node: 2
failback: false
roles:
  - name: web
    preferred_nodes: [a, b.example.com]
    fence:
      method: scsi
      devices:
        - [/dev/disk/by-id/wwn-0x5000, /dev/sdc]
        - ["iscsi://127.0.0.1:3260/iqn.2025-01.lab:web/1"]
    storage:
      device: UUID=0a1b2c3d
      fstype: ext4
      mountpoint: /srv/web
      options: noatime
      fsck: check
    exec:
      command: [/usr/bin/python3, -m, http.server, "8080"]
      dir: /srv/web
      env: {LANG: C}
      user: www-data
      stop_signal: INT
      stop_timeout: 5s
      restarts: 0
      restart_window: 2m
      check: [/usr/bin/true]
    vip:
      address: 10.0.0.10/24
      interface: eth0
      label: eth0:web
    health:
      type: http
      target: http://127.0.0.1:8080/
      interval: 500ms
      timeout: 250ms
      failure_threshold: 2
      start_timeout: 10s
  - name: db
    fence:
      method: agent
      agent:
        path: fence_virsh
        args: {ip: 127.0.0.1}
        plugs: {a: vm-a}
    exec:
      command: [postgres]
    vip:
      address: fd00::10/64
      interface: br0
    health:
      type: tcp
      target: 127.0.0.1:5432
`

func TestParseSpecFull(t *testing.T) {
	s, err := ParseSpec([]byte(fullSpec))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	web, ok := s.Role("web")
	if !ok || s.MaxRolesPerNode != 2 || len(web.Fence.Devices) != 2 || web.Exec.Restarts != 0 ||
		web.Exec.RestartWindow.Std() != 2*time.Minute || web.Health.Interval.Std() != 500*time.Millisecond ||
		web.Storage.Fsck != "check" || web.VIP.Label != "eth0:web" {
		t.Fatalf("web parsed as %+v", web)
	}
	db, _ := s.Role("db")
	// Defaults fill what the user left out.
	if db.Exec.StopSignal != "TERM" || db.Exec.StopTimeout.Std() != 10*time.Second || db.Exec.Restarts != 3 ||
		db.Exec.RestartWindow.Std() != time.Minute || db.Health.Interval.Std() != time.Second ||
		db.Health.Timeout.Std() != time.Second || db.Health.FailureThreshold != 3 ||
		db.Health.StartTimeout.Std() != 30*time.Second || db.Fence.Agent.Timeout.Std() != 30*time.Second {
		t.Fatalf("db defaults: exec %+v health %+v agent %+v", db.Exec, db.Health, db.Fence.Agent)
	}
	if _, ok := s.Role("mail"); ok {
		t.Fatalf("Role(mail) found")
	}
}

func TestParseSpecDefaults(t *testing.T) {
	s, err := ParseSpec([]byte("roles:\n  - name: web\n    storage: {device: /dev/sdb, fstype: xfs, mountpoint: /srv}\n"))
	if err != nil {
		t.Fatalf("ParseSpec: %v", err)
	}
	if s.MaxRolesPerNode != 1 || s.Failback || s.Roles[0].Storage.Fsck != "preen" || s.Roles[0].Fence != nil {
		t.Fatalf("defaults: %+v storage %+v", s, s.Roles[0].Storage)
	}
}

// replace returns fullSpec with old replaced by new (which must occur).
func replace(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(fullSpec, old) {
		t.Fatalf("test bug: %q not in fullSpec", old)
	}
	return strings.Replace(fullSpec, old, new, 1)
}

func TestParseSpecRejects(t *testing.T) {
	tests := []struct {
		name   string
		text   string
		fields []string // FieldError paths expected, in order; nil: not a validation error
		want   string   // substring of the message for non-field errors
	}{
		{name: "bad YAML", text: "roles:\n  - name: web\n   exec: [\n", want: "line"},
		{name: "empty", text: "", want: "empty"},
		{name: "two documents", text: "roles: []\n---\nroles: []\n", want: "one YAML document"},
		{name: "unknown top-level field", text: "rolez: []\n", want: "rolez"},
		{name: "unknown nested field", text: replace(t, "      restarts: 0", "      restart: 0"), want: "restart"},
		{name: "duration without unit", text: replace(t, "stop_timeout: 5s", "stop_timeout: 5"), want: "not a duration"},
		{name: "duplicate key", text: "failback: true\nfailback: false\n", want: "already"},
		{name: "duplicate role names", text: replace(t, "name: db", "name: web"), fields: []string{"roles[1].name"}},
		{name: "bad vip address", text: replace(t, "10.0.0.10/24", "10.0.0.300/24"), fields: []string{"roles[0].vip.address"}},
		{name: "vip without prefix length", text: replace(t, "10.0.0.10/24", "10.0.0.10"), fields: []string{"roles[0].vip.address"}},
		{name: "bad role name", text: replace(t, "name: db", "name: DB_1"), fields: []string{"roles[1].name"}},
		{name: "missing role name", text: replace(t, "  - name: db\n", "  - \n"), fields: []string{"roles[1].name"}},
		{name: "missing exec command", text: replace(t, "command: [postgres]", "command: []"), fields: []string{"roles[1].exec.command"}},
		{name: "zero duration", text: replace(t, "stop_timeout: 5s", "stop_timeout: 0s"), fields: []string{"roles[0].exec.stop_timeout"}},
		{
			name:   "negative durations",
			text:   replace(t, "      interval: 500ms\n      timeout: 250ms", "      interval: -1s\n      timeout: -1ms"),
			fields: []string{"roles[0].health.interval", "roles[0].health.timeout"},
		},
		{name: "scsi without devices", text: replace(t, "      devices:\n        - [/dev/disk/by-id/wwn-0x5000, /dev/sdc]\n        - [\"iscsi://127.0.0.1:3260/iqn.2025-01.lab:web/1\"]\n", ""), fields: []string{"roles[0].fence.devices"}},
		{name: "scsi device not a path", text: replace(t, "/dev/sdc]", "sdc]"), fields: []string{"roles[0].fence.devices[0][1]"}},
		{name: "vip test address not a prefix", text: replace(t, "address: fd00::10/64", "address: fd00::10/64\n      test_address: nope"), fields: []string{"roles[1].vip.test_address"}},
		{name: "keep-running without scsi on every role", text: replace(t, "roles:", "etcd_outage: keep-running\nroles:"), fields: []string{"etcd_outage"}},
		{name: "unknown etcd_outage", text: replace(t, "roles:", "etcd_outage: ignore\nroles:"), fields: []string{"etcd_outage"}},
		{name: "fast detection without fencing", text: strings.Replace(replace(t, "      method: scsi\n", "      method: none\n"), "  - name: web\n", "  - name: web\n    detection: fast\n", 1), fields: []string{"roles[0].fence.devices", "roles[0].detection"}},
		{name: "unknown detection", text: replace(t, "  - name: db\n", "  - name: db\n    detection: quick\n"), fields: []string{"roles[1].detection"}},
		{name: "heartbeat interval out of range", text: strings.Replace(replace(t, "roles:", "heartbeat: {interval: 5ms, misses: 1}\nroles:"), "  - name: db\n", "  - name: db\n    detection: fast\n", 1), fields: []string{"heartbeat.interval", "heartbeat.misses"}},
		{name: "fence agent arg set by understudy", text: replace(t, "args: {ip: 127.0.0.1}", "args: {ip: 127.0.0.1, action: reboot}"), fields: []string{"roles[1].fence.agent.args.action"}},
		{name: "unknown fence method", text: replace(t, "method: agent", "method: stonith"), fields: []string{"roles[1].fence.method", "roles[1].fence.agent"}},
		{name: "unknown health type", text: replace(t, "type: tcp", "type: icmp"), fields: []string{"roles[1].health.type"}},
		{name: "tcp target without port", text: replace(t, "target: 127.0.0.1:5432", "target: 127.0.0.1"), fields: []string{"roles[1].health.target"}},
		{name: "relative mountpoint", text: replace(t, "mountpoint: /srv/web", "mountpoint: srv/web"), fields: []string{"roles[0].storage.mountpoint"}},
		{name: "storage without fstype", text: replace(t, "      fstype: ext4\n", ""), fields: []string{"roles[0].storage.fstype"}},
		{name: "vip without interface", text: replace(t, "      interface: br0\n", ""), fields: []string{"roles[1].vip.interface"}},
		{name: "bad preferred node", text: replace(t, "[a, b.example.com]", "[a, \"b c\", a]"), fields: []string{"roles[0].preferred_nodes[1]", "roles[0].preferred_nodes[2]"}},
		{name: "max roles zero", text: replace(t, "max_roles_per_node: 2", "max_roles_per_node: 0"), fields: []string{"max_roles_per_node"}},
		{
			name:   "every problem reported",
			text:   replace(t, "name: db", "name: web") + "  - name: Bad\n    exec: {command: []}\n",
			fields: []string{"roles[1].name", "roles[2].name", "roles[2].exec.command"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSpec([]byte(tc.text))
			if err == nil {
				t.Fatalf("ParseSpec accepted it: %+v", s)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("error %v does not match ErrInvalidSpec", err)
			}
			got := fieldPaths(err)
			if tc.fields == nil {
				if len(got) != 0 || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %q: want a decode error mentioning %q", err, tc.want)
				}
				return
			}
			if !slices.Equal(got, tc.fields) {
				t.Fatalf("fields %v, want %v; error:\n%v", got, tc.fields, err)
			}
		})
	}
}

// fieldPaths returns the Field of every FieldError joined in err.
func fieldPaths(err error) []string {
	var paths []string
	var fe *FieldError
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			if errors.As(e, &fe) {
				paths = append(paths, fe.Field)
			}
		}
	}
	return paths
}

func TestFieldErrorMessageNamesThePath(t *testing.T) {
	_, err := ParseSpec([]byte(replace(t, "10.0.0.10/24", "10.0.0.300/24")))
	if want := `roles[0].vip.address: "10.0.0.300/24" is not an IP prefix`; err == nil || err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestDurationYAMLAndJSON(t *testing.T) {
	tests := []struct {
		name string
		d    Duration
		text string
	}{
		{name: "milliseconds", d: Duration(500 * time.Millisecond), text: "500ms"},
		{name: "compound", d: Duration(90 * time.Second), text: "1m30s"},
		{name: "zero", d: 0, text: "0s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := json.Marshal(tc.d)
			if err != nil || string(j) != `"`+tc.text+`"` {
				t.Fatalf("json %s, %v", j, err)
			}
			var back Duration
			if err := json.Unmarshal(j, &back); err != nil || back != tc.d {
				t.Fatalf("json round trip %v, %v", back, err)
			}
			y, err := yaml.Marshal(tc.d)
			if err != nil || strings.TrimSpace(string(y)) != tc.text {
				t.Fatalf("yaml %q, %v", y, err)
			}
			back = 0
			if err := yaml.Unmarshal(y, &back); err != nil || back != tc.d {
				t.Fatalf("yaml round trip %v, %v", back, err)
			}
		})
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Fatalf("json accepted a bad duration")
	}
}

func TestPutSpec(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	if _, _, err := s.Spec(ctx); !errors.Is(err, ErrNoSpec) {
		t.Fatalf("Spec before apply = %v, want ErrNoSpec", err)
	}
	if _, _, err := s.PutSpec(ctx, []byte("rolez: []"), 0, true); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("PutSpec of an invalid spec = %v, want ErrInvalidSpec", err)
	}
	if n := len(mustGet(ctx, t, cli, s.key(keySpec)).Kvs); n != 0 {
		t.Fatalf("an invalid spec was written")
	}
	_, rev1, err := s.PutSpec(ctx, []byte(fullSpec), 0, false)
	if err != nil {
		t.Fatalf("first PutSpec: %v", err)
	}
	if _, _, err := s.PutSpec(ctx, []byte(fullSpec), 0, false); !errors.Is(err, ErrSpecConflict) {
		t.Fatalf("PutSpec with a stale revision = %v, want ErrSpecConflict", err)
	}
	changed := replace(t, "max_roles_per_node: 2", "max_roles_per_node: 3")
	spec, rev2, err := s.PutSpec(ctx, []byte(changed), rev1, false)
	if err != nil || spec.MaxRolesPerNode != 3 || rev2 <= rev1 {
		t.Fatalf("PutSpec with the current revision = %v rev %d, %v", spec, rev2, err)
	}
	if _, _, err := s.PutSpec(ctx, []byte(replace(t, "10.0.0.10/24", "bad")), rev2, false); !errors.Is(err, ErrInvalidSpec) {
		t.Fatalf("PutSpec invalid = %v", err)
	}
	_, rev3, err := s.PutSpec(ctx, []byte(fullSpec), rev1, true)
	if err != nil {
		t.Fatalf("forced PutSpec: %v", err)
	}
	got, rev, err := s.Spec(ctx)
	if err != nil || rev != rev3 || got.MaxRolesPerNode != 2 {
		t.Fatalf("Spec = %+v rev %d (want %d), %v", got, rev, rev3, err)
	}
	if text := mustGet(ctx, t, cli, s.key(keySpec)).Kvs[0].Value; string(text) != fullSpec {
		t.Fatalf("stored text differs from the applied text")
	}
}

func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(fullSpec))
	f.Add([]byte("roles: []\n"))
	f.Add([]byte("roles:\n  - name: a\n    vip: {address: 1.2.3.4/8, interface: e}\n"))
	f.Add([]byte("roles: &a [*a]\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, text []byte) {
		s, err := ParseSpec(text)
		if err != nil {
			if !errors.Is(err, ErrInvalidSpec) || err.Error() == "" {
				t.Fatalf("error %v does not match ErrInvalidSpec", err)
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("ParseSpec accepted a spec that does not validate: %v", err)
		}
		// What parsed must survive a round trip through YAML.
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		again, err := ParseSpec(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if len(again.Roles) != len(s.Roles) || again.MaxRolesPerNode != s.MaxRolesPerNode {
			t.Fatalf("round trip changed the spec: %+v -> %+v", s, again)
		}
	})
}
