package lease

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Fuzz targets for what agents and the CLI decode from etcd: any process with write
// access to the prefix (a buggy or newer agent, an operator with etcdctl) can put any
// bytes there, and every reader must survive them.

func newEmptyView() *View {
	return &View{IDs: map[string]uint32{}, Nodes: map[string]NodeRecord{}, Cordoned: map[string]bool{},
		Qualified: map[string]Qualification{}, Claims: map[string]Claim{}, Last: map[string]LastHolder{},
		Targets: map[string]string{}, Fencing: map[string]string{}, Commands: map[string][]Command{}}
}

// FuzzViewAdd: View.add decodes any key and value without panicking; what it accepts
// lands under the name the key gives (ids are never 0), and an error leaves the maps
// without that entry (a bad value is skipped, never half-stored).
func FuzzViewAdd(f *testing.F) {
	rec, _ := json.Marshal(NodeRecord{Name: "a", ID: 1, State: StateActive, Roles: []string{"web"}, Since: time.Unix(1e9, 0).UTC()})
	last, _ := json.Marshal(LastHolder{Node: "a", NodeID: 1, Token: 7, Clean: true, Time: time.Unix(1e9, 0).UTC()})
	q, _ := json.Marshal(Qualification{Passed: true, Checks: []Check{{Role: "web", Name: "exec", Passed: true}}, SpecRev: 3})
	cmd, _ := json.Marshal(Command{ID: "1", Kind: CommandMove, Role: "web", To: "b"})
	for _, s := range []struct {
		rel string
		val []byte
	}{
		{"nodes/a", rec}, {"nodes-ids/a", []byte("1")}, {"nodes-ids/a", []byte("0")}, {"nodes-ids/a", []byte("-1")},
		{"cordoned/a", []byte("1")}, {"qualified/a", q}, {"commands/a/1", cmd}, {"commands/a", cmd},
		{"roles/web/claim", []byte("a")}, {"roles/web/last", last}, {"roles/web/target", []byte("b")},
		{"roles/web/x/y", last}, {"roles//last", last}, {"nodes/", rec}, {"spec", []byte("roles: [{name: web}]\n")},
		{"nodes/a", []byte(`{"name":1}`)}, {"roles/web/last", []byte("{")},
	} {
		f.Add(s.rel, s.val, int64(5), int64(6))
	}
	f.Fuzz(func(t *testing.T, rel string, val []byte, create, mod int64) {
		v := newEmptyView()
		err := v.add(rel, &mvccpb.KeyValue{Key: []byte("/p/" + rel), Value: val, CreateRevision: create, ModRevision: mod})
		for _, id := range v.IDs {
			if id == 0 {
				t.Fatalf("%q: id 0 accepted", rel)
			}
		}
		n := len(v.IDs) + len(v.Nodes) + len(v.Cordoned) + len(v.Qualified) + len(v.Claims) + len(v.Last) +
			len(v.Targets) + len(v.Fencing) + len(v.Commands)
		if err != nil && n != 0 {
			t.Fatalf("%q: error %v but %d entries stored", rel, err, n)
		}
		if n > 1 {
			t.Fatalf("%q: one key produced %d entries", rel, n)
		}
		if err == nil && n == 1 && !strings.Contains(rel, "/") {
			t.Fatalf("%q: an entry from a key without a name", rel)
		}
		if rel == keySpec && (v.Spec == nil) == (v.SpecErr == nil) {
			t.Fatalf("spec: want exactly one of Spec and SpecErr, got %v and %v", v.Spec, v.SpecErr)
		}
	})
}

// FuzzEventJSON: any event value decodes or fails cleanly, and what decodes re-encodes
// to a fixed point (decode(encode(e)) encodes the same), so `history -o json` output
// read back by a script means what it said.
func FuzzEventJSON(f *testing.F) {
	ev, _ := json.Marshal(Event{Time: time.Unix(1e9, 5).UTC(), Role: "web", Node: "b", Kind: "takeover", Token: 9, From: "a",
		Steps: []Step{{Name: "fence", Duration: time.Millisecond}, {Name: "storage", Duration: 2, Err: "x"}}, Total: 3, Detail: "d"})
	f.Add(ev)
	f.Add([]byte(`{"time":"2026-01-01T00:00:00Z","node":"a","kind":"join"}`))
	f.Add([]byte(`{"steps":[{"duration_ns":-1}],"total_ns":9223372036854775807}`))
	f.Add([]byte(`{"time":"not a time"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e1 Event
		if json.Unmarshal(b, &e1) != nil {
			return
		}
		for _, s := range e1.Steps {
			_ = s.String()
		}
		b2, err := json.Marshal(e1)
		if err != nil {
			// Only a time outside what RFC 3339 can write (year > 9999) may fail.
			if e1.Time.Year() <= 9999 && e1.Time.Year() >= 0 {
				t.Fatalf("encode decoded event %+v: %v", e1, err)
			}
			return
		}
		var e2 Event
		if err := json.Unmarshal(b2, &e2); err != nil {
			t.Fatalf("decode re-encoded %s: %v", b2, err)
		}
		b3, err := json.Marshal(e2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("not a fixed point:\n%s\n%s (%v)", b2, b3, err)
		}
	})
}

// FuzzParseID: a node id is a positive decimal uint32; whatever parseID accepts
// ParseUint accepts with the same value, and 0 never.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "0", "4294967295", "4294967296", "-1", " 1", "01", "1e3", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := parseID("n", b)
		if err != nil {
			if id != 0 || !strings.Contains(err.Error(), `node "n" has a bad id`) {
				t.Fatalf("%q: id %d with error %v", b, id, err)
			}
			return
		}
		if id == 0 {
			t.Fatalf("%q: id 0 accepted", b)
		}
		for _, c := range b {
			if c < '0' || c > '9' {
				t.Fatalf("%q accepted with a non-digit", b)
			}
		}
	})
}
