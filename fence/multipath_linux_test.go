//go:build linux

package fence

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fakeSysfs builds /sys/block and /dev trees:
//
//	dm-0 -> sda, sdb      (a multipath map)
//	dm-1 -> dm-0, sdc     (a dm device stacked on it, e.g. LVM)
//	/dev/mapper/data -> ../dm-1
func fakeSysfs(t *testing.T) (devs string) {
	t.Helper()
	root := t.TempDir()
	sys, dev := filepath.Join(root, "sys/block"), filepath.Join(root, "dev")
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"dm-0/slaves/sda", "dm-0/slaves/sdb", "dm-1/slaves/dm-0", "dm-1/slaves/sdc", "dm-2/slaves"} {
		mk(filepath.Join(sys, s))
	}
	mk(filepath.Join(dev, "mapper"))
	for _, f := range []string{"dm-0", "dm-1", "dm-2", "sda", "sdb", "sdc", "sdx"} {
		if err := os.WriteFile(filepath.Join(dev, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../dm-1", filepath.Join(dev, "mapper/data")); err != nil {
		t.Fatal(err)
	}
	oldSys, oldDev := sysBlock, devDir
	sysBlock, devDir = sys, dev
	t.Cleanup(func() { sysBlock, devDir = oldSys, oldDev })
	return dev
}

func TestResolvePaths(t *testing.T) {
	dev := fakeSysfs(t)
	p := func(n string) string { return filepath.Join(dev, n) }
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{"multipath map", p("dm-0"), []string{p("sda"), p("sdb")}, false},
		{"stacked via mapper symlink", p("mapper/data"), []string{p("sda"), p("sdb"), p("sdc")}, false},
		{"plain disk", p("sdx"), []string{p("sdx")}, false},
		{"dm without slaves", p("dm-2"), nil, true},
		{"missing", p("nope"), nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolvePaths(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOpenPathsClosesOnError(t *testing.T) {
	dev := fakeSysfs(t)
	// The fake nodes are regular files: opening works, so OpenPaths returns
	// transports whose SG_IO fails (ENOTTY) -- a transport error.
	ts, err := OpenPaths(filepath.Join(dev, "dm-0"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Fatalf("%d transports, want 2", len(ts))
	}
	if err := CloseAll(ts); err != nil {
		t.Error(err)
	}
	if _, err := OpenPaths(filepath.Join(dev, "nope")); err == nil {
		t.Error("missing device opened")
	}
}
