//go:build linux

package deploy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Bounds of the package test's steps.
const (
	pkgBuildTimeout = 8 * time.Minute // cold: a -trimpath build of everything, and nfpm's first `go run`
	pkgDpkgTimeout  = 2 * time.Minute // one dpkg call, waiting for the dpkg lock included
)

// pkgVersion is the VERSION the test builds with; pkgDebVersion is what nfpm makes of it.
const (
	pkgVersion    = "v1.2.3-rc.1"
	pkgDebVersion = "1.2.3~rc.1"
)

// pkgFiles are files the .deb must install (man pages: a sample of the generated ones).
var pkgFiles = []string{
	"/usr/bin/understudy",
	"/lib/systemd/system/understudy.service",
	"/etc/understudy/agent.yaml.example",
	"/etc/understudy/cluster.yaml.example",
	"/usr/share/bash-completion/completions/understudy",
	"/usr/share/zsh/vendor-completions/_understudy",
	"/usr/share/fish/vendor_completions.d/understudy.fish",
	"/usr/share/man/man1/understudy.1.gz",
	"/usr/share/man/man1/understudy-status.1.gz",
	"/usr/share/man/man1/understudy-node-add.1.gz",
	"/usr/share/doc/understudy/quickstart.md",
}

// TestPackageDeb builds the .deb with deploy/package/build.sh, checks its file list and
// control fields, installs it, runs the installed binary and purges it again (also when
// the test fails), so the machine is left as it was. It refuses to run where a package
// or files named understudy already are: it would overwrite them, then remove them.
func TestPackageDeb(t *testing.T) {
	pkgPrereqs(t)
	deb := pkgBuild(t)
	files := pkgContents(t, deb)
	for _, want := range pkgFiles {
		if _, ok := files[want]; !ok {
			t.Errorf("%s lacks %s", filepath.Base(deb), want)
		}
	}
	for path := range files {
		page := strings.HasPrefix(path, "/usr/share/man/") && !strings.HasSuffix(path, "/")
		if page && (!strings.HasPrefix(path, "/usr/share/man/man1/") || !strings.HasSuffix(path, ".1.gz")) {
			t.Errorf("%s: man pages go into man1, gzipped", path)
		}
	}
	if mode := files["/usr/bin/understudy"]; mode != "-rwxr-xr-x" {
		t.Errorf("/usr/bin/understudy has mode %s, want -rwxr-xr-x", mode)
	}
	fields := pkgOutput(t, "dpkg-deb", "-f", deb, "Package", "Version", "Depends")
	if want := "Package: understudy\nVersion: " + pkgDebVersion + "\nDepends: e2fsprogs, iproute2\n"; fields != want {
		t.Errorf("control fields:\n%s\nwant:\n%s", fields, want)
	}
	if t.Failed() {
		return
	}
	for path := range files {
		if _, err := os.Lstat(path); err == nil && !strings.HasSuffix(path, "/") {
			t.Fatalf("%s already exists on this machine: installing the test package would replace it and purging it would remove it; remove it first", path)
		}
	}
	pkgInstall(t, deb)
	pkgCheckInstalled(t)
}

// pkgPrereqs skips (fails with UNDERSTUDY_REQUIRE_ALL=1) without root, the tools or the
// package's dependencies, and always fails when a package named understudy is present.
func pkgPrereqs(t *testing.T) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (dpkg -i)")
	}
	for _, tool := range []string{"bash", "go", "gzip", "dpkg", "dpkg-deb", "dpkg-query"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	for _, dep := range []string{"e2fsprogs", "iproute2"} {
		if pkgStatus(dep) != "installed" {
			missing = append(missing, "the Debian package "+dep+" (a dependency)")
		}
	}
	if len(missing) > 0 {
		msg := "package test needs " + strings.Join(missing, ", ")
		if os.Getenv("UNDERSTUDY_REQUIRE_ALL") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if st := pkgStatus("understudy"); st != "not-installed" {
		t.Fatalf("a package named understudy is already on this machine (dpkg status %q); "+
			"the test installs and purges its own build and leaves that one alone: "+
			"remove it (dpkg --purge understudy) or run the test on another machine", st)
	}
}

// pkgStatus returns dpkg's status of a package: "installed", "config-files", ... and
// "not-installed" also when dpkg never heard of it.
func pkgStatus(name string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Status}", name).Output()
	if err != nil || len(out) == 0 {
		return "not-installed"
	}
	return strings.TrimSpace(string(out))
}

// pkgBuild runs build.sh deb into a temp dir and returns the .deb's path. The script's
// whole process group is killed on timeout, and its staging dir lives in the test's temp
// dir (TMPDIR), so nothing is left behind either way.
func pkgBuild(t *testing.T) string {
	ctx, cancel := context.WithTimeout(context.Background(), pkgBuildTimeout)
	defer cancel()
	dist, tmp := t.TempDir(), t.TempDir()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join("package", "build.sh"), "deb")
	// Same compile flags as the suite's other builds of the binary: a cache hit, not a
	// second cold compile of etcd and everything else.
	cmd.Env = append(os.Environ(), "DIST="+dist, "VERSION="+pkgVersion, "TMPDIR="+tmp, "CGO_ENABLED=1", "TRIMPATH=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh deb: %v (after %s)\n%s", err, time.Since(start).Round(time.Second), out)
	}
	t.Logf("build.sh deb took %s", time.Since(start).Round(time.Second))
	debs, err := filepath.Glob(filepath.Join(dist, "*.deb"))
	if err != nil || len(debs) != 1 {
		t.Fatalf("build.sh deb made %v in %s (err %v), want one .deb\n%s", debs, dist, err, out)
	}
	if fi, err := os.Stat(debs[0]); err == nil {
		t.Logf("%s: %d bytes", filepath.Base(debs[0]), fi.Size())
	}
	return debs[0]
}

// pkgContents returns the paths `dpkg-deb -c` lists (directories end in "/") with their
// modes.
func pkgContents(t *testing.T, deb string) map[string]string {
	files := map[string]string{}
	for _, line := range strings.Split(pkgOutput(t, "dpkg-deb", "-c", deb), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		files[strings.TrimPrefix(f[len(f)-1], ".")] = f[0]
	}
	return files
}

// pkgInstall installs the .deb, purging it again at cleanup: registered first, so that a
// half-done install is removed too. The --path-include options undo a machine's
// path-exclude of man pages and docs (as in slim container images) for this package.
func pkgInstall(t *testing.T, deb string) {
	t.Cleanup(func() {
		if out, err := pkgDpkg("--purge", "understudy"); err != nil {
			t.Errorf("cleanup: dpkg --purge understudy: %v\n%s", err, out)
		}
		if st := pkgStatus("understudy"); st != "not-installed" {
			t.Errorf("cleanup: understudy still has dpkg status %q", st)
		}
		for _, path := range pkgFiles {
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cleanup: %s still there after the purge (%v)", path, err)
			}
		}
	})
	if out, err := pkgDpkg("--path-include=/usr/share/man/man1/understudy*",
		"--path-include=/usr/share/doc/understudy/*", "-i", deb); err != nil {
		t.Fatalf("dpkg -i %s: %v\n%s", filepath.Base(deb), err, out)
	}
}

// pkgCheckInstalled checks what the installed package does: the binary runs and carries
// the version, the unit runs it from /usr/bin, the man page is a man page.
func pkgCheckInstalled(t *testing.T) {
	if st := pkgStatus("understudy"); st != "installed" {
		t.Errorf("dpkg status %q after dpkg -i, want installed", st)
	}
	if out := pkgOutput(t, "/usr/bin/understudy", "version"); !strings.HasPrefix(out, "understudy "+pkgVersion+"\n") {
		t.Errorf("/usr/bin/understudy version printed %q, want it to start with %q", out, "understudy "+pkgVersion)
	}
	unit, err := os.ReadFile("/lib/systemd/system/understudy.service")
	if err != nil {
		t.Fatal(err)
	}
	if want := "\nExecStart=/usr/bin/understudy agent --config /etc/understudy/agent.yaml\n"; !bytes.Contains(unit, []byte(want)) {
		t.Errorf("installed unit lacks %q:\n%s", strings.TrimSpace(want), unit)
	}
	page, err := pkgGunzip("/usr/share/man/man1/understudy.1.gz")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(page, "\n.TH \"UNDERSTUDY\" \"1\"") {
		t.Errorf("understudy.1.gz has no .TH line:\n%.300s", page)
	}
}

func pkgGunzip(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(z)
	return string(b), err
}

// pkgDpkg runs dpkg, waiting while another dpkg or apt holds its lock (other work on the
// machine may be installing packages at the same moment).
func pkgDpkg(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), pkgDpkgTimeout)
	defer cancel()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		out, err := exec.CommandContext(ctx, "dpkg", args...).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("lock")) {
			return out, err
		}
		select {
		case <-ctx.Done():
			return out, err
		case <-tick.C:
		}
	}
}

// pkgOutput runs a quick command (bounded) and returns its standard output.
func pkgOutput(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
