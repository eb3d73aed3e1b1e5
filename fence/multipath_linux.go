//go:build linux

package fence

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// sysBlock and devDir are variables so tests can point them at a fake tree.
var (
	sysBlock = "/sys/block"
	devDir   = "/dev"
)

// ResolvePaths returns the SCSI device nodes behind dev: for a device-mapper
// device (/dev/dm-N, /dev/mapper/NAME, or a symlink to one) its slaves,
// recursively (a dm device stacked on another dm device), sorted; for
// anything else dev itself. PR commands must go to these paths: a dm device
// does not pass PERSISTENT RESERVE OUT to every path by itself.
func ResolvePaths(dev string) ([]string, error) {
	resolved, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return nil, fmt.Errorf("fence: resolve paths of %s: %w", dev, err)
	}
	name := filepath.Base(resolved)
	if !strings.HasPrefix(name, "dm-") {
		return []string{dev}, nil
	}
	var out []string
	if err := collectSlaves(name, &out, 0); err != nil {
		return nil, fmt.Errorf("fence: resolve paths of %s: %w", dev, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("fence: resolve paths of %s: %s has no slaves", dev, name)
	}
	sort.Strings(out)
	return out, nil
}

// collectSlaves appends /dev/<slave> for every non-dm slave of name.
func collectSlaves(name string, out *[]string, depth int) error {
	if depth > 8 {
		return errors.New("device-mapper stack deeper than 8 levels")
	}
	ents, err := os.ReadDir(filepath.Join(sysBlock, name, "slaves"))
	if err != nil {
		return err
	}
	for _, e := range ents {
		s := e.Name()
		if strings.HasPrefix(s, ".") {
			continue
		}
		if strings.HasPrefix(s, "dm-") {
			if err := collectSlaves(s, out, depth+1); err != nil {
				return err
			}
			continue
		}
		*out = append(*out, filepath.Join(devDir, s))
	}
	return nil
}

// OpenPaths resolves dev (ResolvePaths) and opens an SG_IO transport on
// each path. On error nothing stays open. Callers close the transports
// with CloseAll.
func OpenPaths(dev string) ([]Transport, error) {
	paths, err := ResolvePaths(dev)
	if err != nil {
		return nil, err
	}
	ts := make([]Transport, 0, len(paths))
	for _, p := range paths {
		t, err := OpenSGIO(p)
		if err != nil {
			CloseAll(ts)
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}
