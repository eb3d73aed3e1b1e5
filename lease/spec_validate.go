package lease

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem of a spec, naming the field by its path, for example
// `roles[2].vip.address: "10.0.0.300/24" is not an IP prefix`. It matches ErrInvalidSpec
// under errors.Is.
type FieldError struct {
	Field   string // path of the field: roles[2].vip.address
	Problem string // what is wrong and what is allowed
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes every FieldError match ErrInvalidSpec.
func (e *FieldError) Unwrap() error { return ErrInvalidSpec }

// validator collects every problem instead of stopping at the first, so that one
// `apply` shows the operator everything to fix.
type validator struct{ errs []error }

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

// Validate checks the whole spec and returns errors.Join of one *FieldError per problem,
// or nil. It does not apply defaults: ParseSpec does, before calling Validate.
func (s *Spec) Validate() error {
	var v validator
	if s.MaxRolesPerNode < 1 {
		v.add("max_roles_per_node", "%d: want at least 1", s.MaxRolesPerNode)
	}
	switch s.EtcdOutage {
	case OutageDemote, "":
	case OutageKeepRunning:
		for i, r := range s.Roles {
			if r.Fence == nil || r.Fence.Method != FenceSCSI {
				v.add("etcd_outage", "keep-running needs fence.method scsi on every role; roles[%d] (%q) has none", i, r.Name)
				break
			}
		}
	default:
		v.add("etcd_outage", "%q: want demote or keep-running", s.EtcdOutage)
	}
	if s.HasFast() {
		if s.Heartbeat.Interval < Duration(10*time.Millisecond) || s.Heartbeat.Interval > Duration(time.Second) {
			v.add("heartbeat.interval", "%s: want 10ms to 1s", s.Heartbeat.Interval)
		}
		if s.Heartbeat.Misses < 2 || s.Heartbeat.Misses > 100 {
			v.add("heartbeat.misses", "%d: want 2 to 100 (one lost datagram must not look like a death)", s.Heartbeat.Misses)
		}
	}
	seen := map[string]int{}
	for i := range s.Roles {
		r := &s.Roles[i]
		p := fmt.Sprintf("roles[%d]", i)
		if j, dup := seen[r.Name]; dup && r.Name != "" {
			v.add(p+".name", "%q duplicates roles[%d].name", r.Name, j)
		} else {
			seen[r.Name] = i
		}
		v.role(p, r)
	}
	return errors.Join(v.errs...)
}

func (v *validator) role(p string, r *RoleSpec) {
	switch {
	case r.Name == "":
		v.add(p+".name", "required")
	case CheckRoleName(r.Name) != nil:
		v.add(p+".name", "%q is not a role name (want [a-z0-9][a-z0-9-]{0,62})", r.Name)
	}
	v.nodeNames(p+".preferred_nodes", r.Preferred)
	if r.Fence != nil {
		v.fence(p+".fence", r.Fence)
	}
	if r.Storage != nil {
		v.storage(p+".storage", r.Storage)
		if isISCSIURL(r.Storage.Device) && !fencesPath(r.Fence, r.Storage.Device) {
			// The node writes through the session its key is registered on; a storage
			// path the fence step does not register would be refused by the target.
			v.add(p+".storage.device", "%q: an iscsi:// device must also be one of the role's fence.devices paths (method scsi)", shownDevice(r.Storage.Device))
		}
	}
	if r.Exec != nil {
		v.exec(p+".exec", r.Exec)
	}
	if r.VIP != nil {
		v.vip(p+".vip", r.VIP)
	}
	if r.Health != nil {
		v.health(p+".health", r.Health)
	}
	switch r.Detection {
	case "", DetectLease:
	case DetectFast:
		if r.Fence == nil || (r.Fence.Method != FenceSCSI && r.Fence.Method != FenceAgent) {
			// Fast detection may declare a holder dead that is only slow: only a fence
			// that stops it from writing makes acting on that safe.
			v.add(p+".detection", "fast needs fence.method scsi or agent: a holder declared dead early must be fenced")
		}
	default:
		v.add(p+".detection", "%q: want lease or fast", r.Detection)
	}
}

func (v *validator) nodeNames(p string, names []string) {
	seen := map[string]bool{}
	for i, n := range names {
		switch {
		case CheckNodeName(n) != nil:
			v.add(fmt.Sprintf("%s[%d]", p, i), "%q is not a node name (want %s)", n, NodeNameRule)
		case seen[n]:
			v.add(fmt.Sprintf("%s[%d]", p, i), "%q is listed twice", n)
		}
		seen[n] = true
	}
}

func (v *validator) fence(p string, f *FenceSpec) {
	switch f.Method {
	case FenceNone:
	case FenceSCSI:
		v.scsiDevices(p+".devices", f.Devices)
	case FenceAgent:
		if f.Agent == nil {
			v.add(p+".agent", "required for method agent")
		} else {
			v.fenceAgent(p+".agent", f.Agent)
		}
	case "":
		v.add(p+".method", "required (want none, scsi or agent)")
	default:
		v.add(p+".method", "%q is not a fence method (want none, scsi or agent)", f.Method)
	}
	if f.Method != FenceSCSI && len(f.Devices) > 0 {
		v.add(p+".devices", "only for method scsi")
	}
	if f.Method != FenceAgent && f.Agent != nil {
		v.add(p+".agent", "only for method agent")
	}
}

func (v *validator) scsiDevices(p string, devs [][]string) {
	if len(devs) == 0 {
		v.add(p, "required for method scsi (one list of paths per LUN)")
	}
	for i, paths := range devs {
		if len(paths) == 0 {
			v.add(fmt.Sprintf("%s[%d]", p, i), "empty: want at least one path to the LUN")
		}
		for j, dev := range paths {
			if !isDevPath(dev) && !isISCSIURL(dev) {
				v.add(fmt.Sprintf("%s[%d][%d]", p, i, j), "%q is not a /dev/... path or an iscsi://... URL", shownDevice(dev))
			}
		}
	}
}

func (v *validator) fenceAgent(p string, a *FenceAgentSpec) {
	if a.Path == "" {
		v.add(p+".path", "required (the fence agent program, e.g. fence_ipmilan)")
	}
	v.positive(p+".timeout", a.Timeout)
	for _, node := range slices.Sorted(maps.Keys(a.Plugs)) {
		if CheckNodeName(node) != nil {
			v.add(p+".plugs", "%q is not a node name (want %s)", node, NodeNameRule)
		}
	}
	// The agent sets action and plug itself; stdin is key=value lines, so keys and
	// values must not be able to inject another line.
	for _, k := range slices.Sorted(maps.Keys(a.Args)) {
		switch {
		case k == "action" || k == "plug" || k == "port" || k == "nodename":
			v.add(p+".args."+k, "set by understudy for each call; remove it (use plugs for per-node plugs)")
		case k == "" || strings.ContainsAny(k, "=\n\r \t"):
			v.add(p+".args", "%q is not a fence agent option name", k)
		case strings.ContainsAny(a.Args[k], "\n\r"):
			v.add(p+".args."+k, "must be one line")
		}
	}
}

func isDevPath(s string) bool {
	return strings.HasPrefix(s, "/dev/") && len(s) > len("/dev/") && path.Clean(s) == s
}

// isISCSIURL is a shape check only; fence/iscsi parses the URL for real.
func isISCSIURL(s string) bool {
	rest, ok := strings.CutPrefix(s, "iscsi://")
	return ok && rest != "" && !strings.ContainsAny(rest, " \t\n")
}

func (v *validator) storage(p string, st *StorageSpec) {
	switch {
	case st.Device == "":
		v.add(p+".device", "required")
	case !isDevPath(st.Device) && !isISCSIURL(st.Device) && !hasTagPrefix(st.Device):
		v.add(p+".device", "%q: want /dev/..., UUID=..., LABEL=..., WWN=... or iscsi://...", shownDevice(st.Device))
	}
	if st.FSType == "" || strings.ContainsAny(st.FSType, " \t,") {
		v.add(p+".fstype", "%q: want a file system type such as ext4 or xfs", st.FSType)
	}
	switch {
	case st.Mountpoint == "":
		v.add(p+".mountpoint", "required")
	case !path.IsAbs(st.Mountpoint) || path.Clean(st.Mountpoint) != st.Mountpoint || st.Mountpoint == "/":
		v.add(p+".mountpoint", "%q: want a clean absolute path other than /", st.Mountpoint)
	}
	switch st.Fsck {
	case "none", "preen", "check":
	default:
		v.add(p+".fsck", "%q: want none, preen or check", st.Fsck)
	}
}

func hasTagPrefix(dev string) bool {
	for _, tag := range []string{"UUID=", "LABEL=", "WWN="} {
		if v, ok := strings.CutPrefix(dev, tag); ok && v != "" {
			return true
		}
	}
	return false
}

var stopSignals = map[string]bool{"TERM": true, "INT": true, "HUP": true, "QUIT": true, "USR1": true, "USR2": true, "KILL": true}

func (v *validator) exec(p string, e *ExecSpec) {
	if len(e.Command) == 0 || e.Command[0] == "" {
		v.add(p+".command", "required: the argv of the program to run")
	}
	if e.Dir != "" && !path.IsAbs(e.Dir) {
		v.add(p+".dir", "%q: want an absolute path", e.Dir)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.add(p+".env", "%q is not an environment variable name", k)
		}
	}
	if !stopSignals[e.StopSignal] {
		v.add(p+".stop_signal", "%q: want TERM, INT, HUP, QUIT, USR1, USR2 or KILL", e.StopSignal)
	}
	v.positive(p+".stop_timeout", e.StopTimeout)
	v.positive(p+".restart_window", e.RestartWindow)
	if e.Restarts < 0 {
		v.add(p+".restarts", "%d: want 0 or more", e.Restarts)
	}
	if len(e.Check) > 0 && e.Check[0] == "" {
		v.add(p+".check", "empty program name")
	}
}

func (v *validator) vip(p string, ip *VIPSpec) {
	if ip.Address == "" {
		v.add(p+".address", "required (an IP prefix such as 10.0.0.10/24)")
	} else if _, err := netip.ParsePrefix(ip.Address); err != nil {
		v.add(p+".address", "%q is not an IP prefix", ip.Address)
	}
	switch {
	case ip.Interface == "":
		v.add(p+".interface", "required")
	case len(ip.Interface) > 15 || strings.ContainsAny(ip.Interface, "/: \t\n\x00"):
		v.add(p+".interface", "%q is not a network interface name", ip.Interface)
	}
	if ip.TestAddress != "" {
		if _, err := netip.ParsePrefix(ip.TestAddress); err != nil {
			v.add(p+".test_address", "%q is not an IP prefix", ip.TestAddress)
		} else if ip.TestAddress == ip.Address {
			v.add(p+".test_address", "%q is the VIP itself; want a spare address", ip.TestAddress)
		}
	}
	if len(ip.Label) > 15 || strings.ContainsAny(ip.Label, "/ \t\n\x00") {
		v.add(p+".label", "%q: want at most 15 characters without spaces or /", ip.Label)
	}
}

func (v *validator) health(p string, h *HealthSpec) {
	switch h.Type {
	case HealthTCP:
		if !isHostPort(h.Target) {
			v.add(p+".target", "%q: want host:port for type tcp", h.Target)
		}
	case HealthHTTP:
		if u, err := url.Parse(h.Target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".target", "%q: want an http:// or https:// URL for type http", h.Target)
		}
	case HealthExec:
		if len(h.Command) == 0 || h.Command[0] == "" {
			v.add(p+".command", "required for type exec")
		}
	case "":
		v.add(p+".type", "required (want tcp, http or exec)")
	default:
		v.add(p+".type", "%q is not a health check type (want tcp, http or exec)", h.Type)
	}
	v.positive(p+".interval", h.Interval)
	v.positive(p+".timeout", h.Timeout)
	v.positive(p+".start_timeout", h.StartTimeout)
	if h.FailureThreshold < 1 {
		v.add(p+".failure_threshold", "%d: want at least 1", h.FailureThreshold)
	}
}

func isHostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 65536
}

func (v *validator) positive(field string, d Duration) {
	if d <= 0 {
		v.add(field, "%s: want a duration greater than 0", d)
	}
}

// fencesPath reports whether the role's SCSI fencing registers path.
func fencesPath(f *FenceSpec, path string) bool {
	if f == nil || f.Method != FenceSCSI {
		return false
	}
	for _, paths := range f.Devices {
		if slices.Contains(paths, path) {
			return true
		}
	}
	return false
}

// shownDevice is a device path as validation errors may quote it: an iscsi:// URL's CHAP
// secret (its userinfo password) replaced, since errors reach logs and terminals.
func shownDevice(dev string) string {
	u, err := url.Parse(dev)
	if err != nil {
		if strings.Contains(dev, "@") {
			return "(unparsable URL with credentials)"
		}
		return dev
	}
	return u.Redacted()
}
