package takeover

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParseBlkidExport: blkid's output about a shared device decides whether the agent
// mounts it (fstype check). Any output parses without panic into keys that are
// non-empty, without "=" or line breaks; and a KEY=value line written the way blkid
// escapes it (a backslash before each special byte) reads back as written.
func FuzzParseBlkidExport(f *testing.F) {
	f.Add([]byte("DEVNAME=/dev/sdb\nUUID=0f1e\nTYPE=ext4\n"), "LABEL", `my data\disk`)
	f.Add([]byte("LABEL=a\\ b\r\nTYPE=xfs"), "TYPE", "ext4")
	f.Add([]byte("=x\nnoequals\nK=\n"), "K", "")
	f.Add([]byte("K=v\\"), "PARTLABEL", "trailing\\")
	f.Fuzz(func(t *testing.T, out []byte, key, value string) {
		for k, v := range parseBlkidExport(out) {
			if k == "" || strings.ContainsAny(k, "=\n") || strings.Contains(v, "\n") {
				t.Fatalf("parsed %q=%q from %q", k, v, out)
			}
		}
		if key == "" || strings.ContainsAny(key, "=\r\n\\") || strings.ContainsAny(value, "\r\n") {
			return // blkid never prints such a line
		}
		var esc strings.Builder
		for i := 0; i < len(value); i++ {
			if strings.IndexByte(" \\'\"$`", value[i]) >= 0 {
				esc.WriteByte('\\')
			}
			esc.WriteByte(value[i])
		}
		m := parseBlkidExport([]byte("DEVNAME=/dev/x\n" + key + "=" + esc.String() + "\n"))
		if got, ok := m[key]; !ok || got != value {
			t.Fatalf("%s=%s read back as %q (present %v)", key, esc.String(), got, ok)
		}
	})
}

// FuzzClusterStatusJSON: clients of the health endpoint (/status) and scripts reading
// `status -o json` decode ClusterStatus; whatever decodes re-encodes to a fixed point,
// lease_left_ms included (NodeStatus's custom encoding).
func FuzzClusterStatusJSON(f *testing.F) {
	f.Add([]byte(`{"cluster":"c","revision":3,"nodes":[{"name":"a","id":1,"state":"active","roles":["web"],"lease_left_ms":2500,"qualified":"passed","cordoned":false}],"roles":[{"name":"web","holder":"a","token":5,"last_clean":true}]}`))
	f.Add([]byte(`{"nodes":[{"lease_left_ms":-9223372036854775808}]}`))
	f.Add([]byte(`{"nodes":[{"lease_left_ms":9223372036854775807,"since":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"nodes":[null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c1 ClusterStatus
		if json.Unmarshal(b, &c1) != nil {
			return
		}
		b2, err := json.Marshal(c1)
		if err != nil {
			return // a decoded time beyond year 9999 cannot be written again
		}
		var c2 ClusterStatus
		if err := json.Unmarshal(b2, &c2); err != nil {
			t.Fatalf("decode re-encoded %s: %v", b2, err)
		}
		b3, err := json.Marshal(c2)
		if err != nil || !bytes.Equal(b2, b3) {
			t.Fatalf("not a fixed point:\n%s\n%s (%v)", b2, b3, err)
		}
	})
}
