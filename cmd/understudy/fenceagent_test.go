package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/fence"
	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/scsi"
	"github.com/understudy-ha/understudy/fence/tgtdtest"
)

func TestFenceAgentParseStdin(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr string
	}{
		{"what pacemaker sends", "action=off\nnodename=node-b\nnodeid=2\nplug=2\ndevices=/dev/sdb,/dev/sdc\ncluster=prod\n",
			map[string]string{"action": "off", "nodename": "node-b", "nodeid": "2", "plug": "2", "devices": "/dev/sdb,/dev/sdc", "cluster": "prod"}, ""},
		{"comments, blank lines, surrounding space", "# set by hand\n\n   action=status  \n#plug=9\n\tplug=3\n",
			map[string]string{"action": "status", "plug": "3"}, ""},
		{"old names", "port=4\noption=on\n", map[string]string{"plug": "4", "action": "on"}, ""},
		{"dashes for underscores", "local-node-id=1\nkey-file=/tmp/k\n", map[string]string{"local_node_id": "1", "key_file": "/tmp/k"}, ""},
		{"quoted value", `cluster="prod"`, map[string]string{"cluster": "prod"}, ""},
		{"last one wins", "plug=1\nplug=2\n", map[string]string{"plug": "2"}, ""},
		{"equals sign in the value", "key=a=b\n", map[string]string{"key": "a=b"}, ""},
		{"empty value", "key_file=\n", map[string]string{"key_file": ""}, ""},
		{"CRLF line ends", "action=on\r\nplug=1\r\n", map[string]string{"action": "on", "plug": "1"}, ""},
		{"no final newline", "plug=7", map[string]string{"plug": "7"}, ""},
		{"empty input", "", map[string]string{}, ""},
		{"unknown option", "plug=1\ndevcies=/dev/sdb\n", nil, `unknown option "devcies" on stdin line 2`},
		{"pacemaker-only parameter", "pcmk_host_map=a:1\n", nil, `unknown option "pcmk_host_map"`},
		{"line without equals", "verbose\n", nil, `stdin line 1 "verbose": want name=value`},
		{"empty name", "=1\n", nil, "want name=value"},
		{"case matters", "Action=off\n", nil, `unknown option "Action"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAgentStdin(strings.NewReader(tc.in))
			checkParse(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func TestFenceAgentParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr string
	}{
		{"long options", []string{"--action=off", "--plug", "2", "--local-node-id=3", "--devices=/dev/sdb"},
			map[string]string{"action": "off", "plug": "2", "local_node_id": "3", "devices": "/dev/sdb"}, ""},
		{"short options", []string{"-o", "status", "-n2", "-d", "/dev/sdb", "-k0x1", "-v", "-c", "prod"},
			map[string]string{"action": "status", "plug": "2", "devices": "/dev/sdb", "key": "0x1", "verbose": "1", "cluster": "prod"}, ""},
		{"underscores and old names", []string{"--local_key=0x2", "--port=5", "--option=on"},
			map[string]string{"local_key": "0x2", "plug": "5", "action": "on"}, ""},
		{"boolean with a value", []string{"--verbose=no"}, map[string]string{"verbose": "no"}, ""},
		{"empty value", []string{"--key-file="}, map[string]string{"key_file": ""}, ""},
		{"unknown long option", []string{"--plug=1", "--bogus=2"}, nil, `unknown option "--bogus" on the command line`},
		{"unknown short option", []string{"-x"}, nil, `unknown option "-x"`},
		{"missing value", []string{"--plug"}, nil, "option --plug needs a value"},
		{"positional argument", []string{"off"}, nil, `unexpected argument "off"`},
		{"lone dash", []string{"-"}, nil, `unexpected argument "-"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAgentArgs(tc.args)
			checkParse(t, got, err, tc.want, tc.wantErr)
		})
	}
}

func checkParse(t *testing.T, got map[string]string, err error, want map[string]string, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestFenceAgentKeys(t *testing.T) {
	prod2, _ := fence.NewKey("prod", 2)
	prod3, _ := fence.NewKey("prod", 3)
	tests := []struct {
		name    string
		opts    map[string]string
		want    fence.Key
		wantErr string
	}{
		{"plug and cluster", map[string]string{"plug": "2", "cluster": "prod"}, prod2, ""},
		{"nodename without plug", map[string]string{"nodename": "3", "cluster": "prod"}, prod3, ""},
		{"plug wins over nodename", map[string]string{"plug": "2", "nodename": "node-c", "cluster": "prod"}, prod2, ""},
		{"key wins over plug", map[string]string{"key": "0x6754af9600000003", "plug": "2"}, 0x6754af9600000003, ""},
		{"node name as plug", map[string]string{"plug": "node-a", "cluster": "prod"}, 0, `option plug "node-a": want a node id`},
		{"node id 0", map[string]string{"plug": "0", "cluster": "prod"}, 0, "want a node id"},
		{"no cluster", map[string]string{"plug": "2"}, 0, "option cluster: missing"},
		{"no plug", map[string]string{"cluster": "prod"}, 0, "option plug: missing"},
		{"key 0", map[string]string{"key": "0"}, 0, "option key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newAgentConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.targetKey()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("key %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if prod2 != 0x6754af9600000002 { // the example in docs/fencing.md and docs/fence-agent.md
		t.Errorf("node 2 of prod is %v", prod2)
	}
}

func TestFenceAgentLocalKey(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", "fence-agent.key")
	prod4, _ := fence.NewKey("prod", 4)
	if err := writeKeyFile(file, prod4); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    map[string]string
		want    fence.Key
		wantErr string
	}{
		{"from the key file on wrote", map[string]string{"key_file": file}, prod4, ""},
		{"local_node_id", map[string]string{"local_node_id": "2", "cluster": "prod", "key_file": file}, 0x6754af9600000002, ""},
		{"local_key", map[string]string{"local_key": "0x11"}, 0x11, ""},
		{"both", map[string]string{"local_key": "0x11", "local_node_id": "2"}, 0, "contradict"},
		{"no key file", map[string]string{"key_file": filepath.Join(dir, "none")}, 0, "written by action on"},
		{"key file disabled", map[string]string{"key_file": ""}, 0, "own key is unknown"},
		{"bad local_node_id", map[string]string{"local_node_id": "x", "cluster": "prod"}, 0, `option local_node_id "x"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := newAgentConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.localKey()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("key %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// TestFenceAgentExitCodes runs the command as Pacemaker's wrapper does (through run), for
// what needs no devices: bad input exits 1 (never 2, which means "off"), help 0.
func TestFenceAgentExitCodes(t *testing.T) {
	valid := []string{"--plug=2", "--cluster=prod", "--devices=/dev/understudy-test-none,iscsi://127.0.0.1:1/iqn.2026-11.dev.understudy:x/1"}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"validate-all opens nothing", append([]string{"--action=validate-all"}, valid...), 0, "", ""},
		{"help", []string{"--help"}, 0, "fence-agents calling convention", ""},
		{"metadata", []string{"-o", "metadata"}, 0, `<resource-agent name="fence_understudy"`, ""},
		{"unknown option", append([]string{"--action=off", "--devcies=/dev/sdb"}, valid...), 1, "", `unknown option "--devcies"`},
		{"reboot", append([]string{"--action=reboot"}, valid...), 1, "", "reboot is not offered"},
		{"bad timeout", append([]string{"--action=status", "--timeout=soon"}, valid...), 1, "", `option timeout "soon"`},
		{"no devices", []string{"--action=status", "--plug=2", "--cluster=prod"}, 1, "", "option devices: missing"},
		{"relative device", []string{"--action=on", "--plug=2", "--cluster=prod", "--devices=sdb"}, 1, "", `"sdb": want /dev/...`},
		{"bad iSCSI URL keeps the secret", []string{"--action=on", "--plug=2", "--cluster=prod", "--devices=iscsi://u:s3cret@127.0.0.1/notaniqn/1"}, 1, "", "option devices"},
		{"node name without a map", []string{"--action=validate-all", "--plug=node-a", "--cluster=prod", "--devices=/dev/sdb"}, 1, "", "pcmk_host_map"},
		{"fence itself", append([]string{"--action=off", "--local-node-id=2"}, valid...), 1, "", "own key"},
		{"missing own key", append([]string{"--action=off", "--key-file="}, valid...), 1, "", "own key is unknown"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, append([]string{"fence-agent"}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
				t.Fatalf("exit %d, want %d (stdout should contain %q, stderr %q)\nstdout: %s\nstderr: %s",
					code, tc.wantCode, tc.wantStdout, tc.wantStderr, stdout, stderr)
			}
			if strings.Contains(stderr, "s3cret") {
				t.Fatalf("the CHAP secret is in the error: %s", stderr)
			}
		})
	}
}

func TestFenceAgentMetadata(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runFenceAgent(ctx, nil, strings.NewReader("action=meta-data\n"), &out, &out); err != nil {
		t.Fatal(err)
	}
	var m agentMeta
	if err := xml.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("metadata is not XML: %v\n%s", err, out.String())
	}
	params := map[string]agentParam{}
	for _, p := range m.Params {
		params[p.Name] = p
	}
	for _, o := range agentOptions {
		if _, ok := params[o.name]; ok == o.hidden {
			t.Errorf("option %s: in metadata %v, hidden %v", o.name, ok, o.hidden)
		}
	}
	if params["port"].Deprecated != "1" || params["plug"].Obsoletes != "port" || params["action"].Required != "1" {
		t.Errorf("plug/port/action parameters: %+v %+v %+v", params["plug"], params["port"], params["action"])
	}
	var actions []string
	for _, a := range m.Actions {
		actions = append(actions, a.Name)
		if a.Name == "on" && (a.OnTarget != "1" || a.Automatic != "1") {
			t.Errorf("on must run on the target, automatically (unfencing): %+v", a)
		}
	}
	if strings.Join(actions, " ") != strings.Join(agentActions, " ") {
		t.Errorf("actions %v, want %v (never reboot: fabric fencing)", actions, agentActions)
	}
}

// FuzzFenceAgentArgs: the parsers never panic, only ever return known options under
// their canonical names, and what stdin parsing returns reads back the same.
func FuzzFenceAgentArgs(f *testing.F) {
	for _, s := range []string{"action=off\nplug=2\ndevices=/dev/sdb\ncluster=prod\n", "# c\n\n port=1 \r\n", `key="0x1"`,
		"--action=on --plug 2 -d /dev/sdb -v", "-n2 -k0x5a -o status", "=\n=x", "plug=\"\"\"", "timeout=1e308\ndelay=-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if opts, err := parseAgentStdin(strings.NewReader(in)); err == nil {
			checkCanonical(t, opts)
			var b strings.Builder
			for k, v := range opts {
				fmt.Fprintf(&b, "%s=\"%s\"\n", k, v) // quoted: stripped once on the way back
			}
			again, err := parseAgentStdin(strings.NewReader(b.String()))
			if err != nil {
				t.Fatalf("re-parse of %q: %v", b.String(), err)
			}
			if !maps.Equal(opts, again) {
				t.Fatalf("round trip: %v became %v", opts, again)
			}
			exerciseConfig(opts)
		}
		if opts, err := parseAgentArgs(strings.Fields(in)); err == nil {
			checkCanonical(t, opts)
			exerciseConfig(opts)
		}
	})
}

func checkCanonical(t *testing.T, opts map[string]string) {
	t.Helper()
	for name := range opts {
		if o, ok := lookupAgentOption(name); !ok || o.name != name {
			t.Fatalf("parser returned %q, not a canonical option name", name)
		}
	}
}

// exerciseConfig runs the validation that needs no devices; it must not panic.
func exerciseConfig(opts map[string]string) {
	if c, err := newAgentConfig(opts); err == nil {
		_, _ = c.targetKey()
		_ = c.checkDevices()
		if c.opts["key_file"] == defaultKeyFile { // never read the machine's real key file
			c.opts["key_file"] = ""
		}
		_, _ = c.localKey()
	}
}

// TestFenceAgentTgtd is the Pacemaker story on a real target (a private tgtd, two LUNs):
// nodes 1 and 2 are unfenced, node 2 fences node 1, the target rejects node 1's writes, and
// node 1 cannot fence back.
func TestFenceAgentTgtd(t *testing.T) {
	tg := tgtdtest.Start(t, tgtdtest.WithLUNs(2))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const cluster = "fence-agent-test"
	key1, _ := fence.NewKey(cluster, 1)
	// This test process plays node 2: its `on` records node 2's key in the key file.
	common := fmt.Sprintf("cluster=%s\ndevices=%s,%s\nkey_file=%s\ntimeout=20\n",
		cluster, tg.URL(1), tg.URL(2), filepath.Join(t.TempDir(), "fence-agent.key"))
	agent := func(want int, lines string, wantOut string) {
		t.Helper()
		var out, errb bytes.Buffer
		err := runFenceAgent(ctx, nil, strings.NewReader(lines+common), &out, &errb)
		if code := agentExitCode(err); code != want || !strings.Contains(out.String()+errb.String()+fmt.Sprint(err), wantOut) {
			t.Fatalf("%q: exit %d (%v), want %d and %q in the output\nstdout: %s\nstderr: %s",
				lines, code, err, want, wantOut, out.String(), errb.String())
		}
	}
	// Node 1 writes to LUN 1 through its own session, registered by itself, as a node
	// does through its own initiator when Pacemaker runs `on` on it.
	n1 := nodeSession(ctx, t, tg, 1)
	mustDo(t, "node 1 registers", (&fence.Device{Name: "n1", Paths: []fence.Transport{n1}}).Unfence(ctx, key1))
	lun, err := n1.Device(ctx)
	mustDo(t, "node 1 opens LUN 1", err)
	_, err = lun.WriteAtContext(ctx, make([]byte, lun.BlockSize()), 0)
	mustDo(t, "node 1 writes before the fence", err)

	agent(agentExitOff, "action=status\nplug=2\n", "Status: OFF")
	agent(agentExitOK, "action=on\nplug=1\n", "Success: registered")
	agent(agentExitOK, "action=on\nport=2\nnodename=node-b\nnodeid=2\n", "Success: registered")
	agent(agentExitOK, "action=monitor\n", "2 device(s), 2 path(s) answer")
	agent(agentExitOK, "action=status\nplug=1\n", "Status: ON")
	agent(agentExitOK, "action=off\nplug=1\nnodename=node-a\n", "verified on every path")
	agent(agentExitOff, "action=status\nplug=1\n", "Status: OFF")
	agent(agentExitOK, "action=status\nplug=2\n", "Status: ON")
	agent(agentExitOK, "action=off\nplug=1\n", "Success: fenced") // again: already off is success

	_, err = lun.WriteAtContext(ctx, make([]byte, lun.BlockSize()), 0)
	if !errors.Is(err, scsi.ErrReservationConflict) {
		t.Fatalf("node 1's write after the fence: %v, want RESERVATION CONFLICT", err)
	}
	agent(agentExitFail, "action=off\nplug=2\nlocal_node_id=1\n", "it was fenced or never unfenced")
	agent(agentExitOK, "action=status\nplug=2\n", "Status: ON")

	// Through the command as the wrapper runs it, with command-line options.
	stdout, stderr, code := runCLI(t, "fence-agent", "--action=status", "--plug=1", "--cluster="+cluster,
		"--devices="+tg.URL(1)+","+tg.URL(2))
	if code != agentExitOff || stdout != "Status: OFF\n" {
		t.Fatalf("status of the fenced node: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func agentExitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return agentExitOK
	case errors.As(err, &ee):
		return ee.code
	}
	return agentExitFail
}

// nodeSession logs node id in to LUN 1 with its own initiator name.
func nodeSession(ctx context.Context, t *testing.T, tg *tgtdtest.Target, id uint32) *iscsi.Session {
	t.Helper()
	target, err := iscsi.ParseURL(tg.URL(1))
	mustDo(t, "parse URL", err)
	s, err := iscsi.Dial(ctx, target, iscsi.Config{InitiatorName: fmt.Sprintf("iqn.2026-11.dev.understudy:node-%d", id),
		ISID: iscsi.ISIDFromNodeID(id), NopInterval: -1})
	if err != nil {
		t.Fatalf("node %d login: %v\n%s", id, err, tg.LogTail())
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Close(cctx)
	})
	return s
}

func mustDo(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
