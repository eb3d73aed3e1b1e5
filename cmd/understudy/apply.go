package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lease"
)

type applyOpts struct {
	file       string
	force      bool
	dryRun     bool
	ifRevision int64
}

func (a *app) newApplyCmd() *cobra.Command {
	var o applyOpts
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate a cluster spec and store it in etcd",
		Long: `apply parses and validates the cluster spec locally (every problem is printed and
nothing is written when any is found: exit 2), shows a diff against the stored spec, and
writes it only if nobody else changed the stored spec since it was read.

On a conflict, review the new state and apply again, or overwrite with --force.
Agents pick the new spec up at once: roles removed from the spec are stopped and released
by their holders; new roles are claimed by free qualified standbys.`,
		Example: `  understudy apply -f cluster.yaml --dry-run
  understudy apply -f cluster.yaml
  understudy apply -f cluster.yaml --if-revision 1234   # the revision a dry run showed
  cat cluster.yaml | understudy apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.file == "" {
				return usageErrorf("missing -f FILE (the cluster spec to apply, or - for stdin)")
			}
			if cmd.Flags().Changed("if-revision") && o.force {
				return usageErrorf("--if-revision and --force contradict each other: use one")
			}
			if !cmd.Flags().Changed("if-revision") {
				o.ifRevision = -1
			}
			return a.apply(cmd.Context(), cmd.InOrStdin(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "cluster spec YAML file, - for stdin")
	f.BoolVar(&o.force, "force", false, "overwrite the stored spec even if it changed since it was read")
	f.BoolVar(&o.dryRun, "dry-run", false, "validate and show the diff, write nothing")
	f.Int64Var(&o.ifRevision, "if-revision", 0, "apply only if the stored spec is still at this revision (0 = no spec yet)")
	return cmd
}

func (a *app) apply(ctx context.Context, stdin io.Reader, o applyOpts) error {
	text, err := readSpecFile(o.file, stdin)
	if err != nil {
		return err
	}
	spec, err := lease.ParseSpec(text)
	if err != nil {
		// Validation errors quote values, and an iscsi:// URL may carry a CHAP secret.
		return &exitError{code: exitUsage, err: specProblems(o.file, errors.New(newSpecRedactor(text).redact(err.Error())))}
	}
	st, done, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	stored, rev, err := storedSpecText(ctx, st)
	if err != nil {
		return err
	}
	if bytes.Equal(stored, text) {
		_, _ = fmt.Fprintf(a.stdout, "no changes: the stored spec (revision %d) is identical\n", rev)
		return nil
	}
	oldName := fmt.Sprintf("stored spec (revision %d)", rev)
	if rev == 0 {
		oldName = "stored spec (none applied yet)"
	}
	// The diff shows what changes, never the secrets in either text (CHAP secrets in
	// iscsi:// URLs, fence-agent passwords): its output ends up in terminals and CI logs.
	red := newSpecRedactor(stored, text)
	oldShown, newShown := red.redact(string(stored)), red.redact(string(text))
	writeDiff(a.stdout, oldName, o.file, oldShown, newShown)
	if oldShown == newShown {
		_, _ = fmt.Fprintln(a.stdout, "only secret values changed (not shown)")
	}
	a.warnRemovedRoles(stored, spec)
	if o.dryRun {
		_, _ = fmt.Fprintf(a.stdout, "dry run: nothing written (apply with --if-revision %d to be sure nothing changed in between)\n", rev)
		return nil
	}
	expect := rev
	if o.ifRevision >= 0 {
		expect = o.ifRevision
	}
	_, newRev, err := st.PutSpec(ctx, text, expect, o.force)
	if errors.Is(err, lease.ErrSpecConflict) {
		return fmt.Errorf("the stored spec is no longer at revision %d (someone else applied a spec): "+
			"review it with `understudy apply --dry-run -f %s` and apply again, or overwrite it with --force", expect, o.file)
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", o.file, err)
	}
	_, _ = fmt.Fprintf(a.stdout, "applied %s: %d roles, spec revision %d\n", o.file, len(spec.Roles), newRev)
	return nil
}

func readSpecFile(name string, stdin io.Reader) ([]byte, error) {
	var text []byte
	var err error
	if name == "-" {
		text, err = io.ReadAll(stdin)
	} else {
		text, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("read cluster spec: %w", err)}
	}
	return text, nil
}

// specProblems puts every problem on its own indented line: ParseSpec joins them with
// newlines (errors.Join), and yaml's strict decoding lists one unknown field per line.
func specProblems(file string, err error) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: invalid cluster spec, nothing written:", file)
	for _, l := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		b.WriteString("\n  ")
		b.WriteString(strings.TrimSpace(l))
	}
	return errors.New(b.String())
}

// storedSpecText reads the spec exactly as it was applied, for the diff, with the revision
// to guard the write. lease.Store.Spec returns the parsed spec only, so read the key.
func storedSpecText(ctx context.Context, st *lease.Store) ([]byte, int64, error) {
	resp, err := st.Client().Get(ctx, st.Prefix()+"spec")
	if err != nil {
		return nil, 0, fmt.Errorf("read stored spec: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// warnRemovedRoles says which roles the new spec drops: their holders will stop them.
func (a *app) warnRemovedRoles(stored []byte, next *lease.Spec) {
	if len(stored) == 0 {
		return
	}
	old, err := lease.ParseSpec(stored)
	if err != nil {
		return // an old spec that no longer validates: the diff shows everything anyway
	}
	for _, r := range old.Roles {
		if _, ok := next.Role(r.Name); !ok {
			_, _ = fmt.Fprintf(a.stdout, "warning: role %s is removed: its holder will stop and release it\n", r.Name)
		}
	}
}
