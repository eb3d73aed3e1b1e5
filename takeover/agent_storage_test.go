//go:build linux

package takeover

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A crashed earlier run may leave the role's file system mounted; the agent unmounts it
// before it joins (here the node is cordoned, so it will not mount it again itself).
func TestCrashLeftoversCleanedBeforeJoin(t *testing.T) {
	fs := newLoopFS(t)
	mp := storageMountpoint(t)
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(fs.dev, mp, "ext4", 0, ""); err != nil {
		t.Fatalf("mount the leftover: %v", err)
	}
	f := newFarm(t)
	f.apply("roles:\n  - name: r1\n    storage:\n      device: " + fs.dev + "\n      fstype: ext4\n      mountpoint: " + mp +
		"\n    exec:\n      command: [sleep, \"3600\"]\n")
	if err := f.store.SetCordoned(context.Background(), "a", true); err != nil {
		t.Fatal(err)
	}
	f.start("a")
	f.waitView("a joined", stateIs("a", StateCordoned))
	if m := mountedAt(t, mp); m != nil {
		t.Fatalf("leftover mount still at %s after the agent joined: %+v", mp, m)
	}
}

// Storage moves with the role: the holder unmounts it, the standby checks and mounts
// it, and what the first holder's executable wrote is there for the second.
func TestStorageFollowsTheRole(t *testing.T) {
	fs := newLoopFS(t)
	mp := storageMountpoint(t)
	f := newFarm(t)
	f.apply(`roles:
  - name: r1
    preferred_nodes: [a]
    storage:
      device: LABEL=` + fs.label + `
      fstype: ext4
      mountpoint: ` + mp + `
    exec:
      command: [sh, -c, 'echo "$UNDERSTUDY_NODE $UNDERSTUDY_TOKEN" >> ` + mp + `/log && sync && exec sleep 3600']
      dir: /
`)
	// All agents of this test share one host and mountpoint: b joins first, because an
	// agent's start-up cleanup unmounts its roles' mountpoints (crash leftovers).
	f.start("b")
	f.waitView("b standby", stateIs("b", StateStandby))
	f.start("a")
	f.waitView("a holds r1", all(holderIs("r1", "a"), stateIs("a", StateActive)))
	if err := f.stop("a"); err != nil {
		t.Fatal(err)
	}
	f.waitView("b holds r1", all(holderIs("r1", "b"), stateIs("b", StateActive)))
	log, err := os.ReadFile(filepath.Join(mp, "log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "a ") || !strings.HasPrefix(lines[1], "b ") {
		t.Fatalf("log on the shared file system = %q, want a's line then b's", log)
	}
	evs, err := f.store.Events(context.Background(), "r1", 0)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-1]
	names := []string{}
	for _, s := range last.Steps {
		names = append(names, s.Name)
	}
	if last.Kind != EventTakeover || !strings.Contains(strings.Join(names, ","), "fence,mark,storage,exec") {
		t.Fatalf("takeover steps = %v (%s), want fence, mark, storage, exec in order", names, last.Kind)
	}
}
