package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdRoot is etcd's built-in administrator: the user and role that auth enable requires.
const etcdRoot = "root"

type etcdSetupOpts struct {
	passwordFile     string
	noPassword       bool
	enableAuth       bool
	rootPasswordFile string
}

func (a *app) newEtcdSetupCmd() *cobra.Command {
	var o etcdSetupOpts
	cmd := &cobra.Command{
		Use:   "etcd-setup",
		Short: "Create the etcd role and user the agents of a cluster use (RBAC)",
		Long: `etcd-setup connects to etcd as an administrator (the usual --config, --etcd-endpoints
and UNDERSTUDY_ETCD_* settings) and makes sure that:

  - the role understudy-<cluster> exists with readwrite permission on exactly the
    cluster's key prefix (other permissions of that role are revoked);
  - the user understudy-<cluster> exists, with the password from --password-file, or
    with no password (--no-password) when agents authenticate by client certificate
    whose CN is the user name;
  - the user has the role;
  - with --enable-auth: the root user and role exist and etcd authentication is on.

It prints what it changed; running it again changes nothing. The password of an
existing user is never changed (use etcdctl user passwd) and never printed.`,
		Example: `  understudy etcd-setup --cluster prod --password-file /etc/understudy/etcd-password --enable-auth
  understudy etcd-setup --cluster prod --no-password --config /etc/understudy/admin.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runEtcdSetup(cmd.Context(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.passwordFile, "password-file", "", "file holding the new user's password (first line)")
	f.BoolVar(&o.noPassword, "no-password", false, "create the user without password: agents authenticate with a client certificate whose CN is the user name")
	f.BoolVar(&o.enableAuth, "enable-auth", false, "also ensure the root user and role exist and enable etcd authentication")
	f.StringVar(&o.rootPasswordFile, "root-password-file", "", "with --enable-auth: password of the root user if it must be created (default: none, certificate CN=root)")
	return cmd
}

// readPasswordFile returns the first line of path; flag names the flag in errors.
func readPasswordFile(flag, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", usageErrorf("--%s: %v", flag, err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) == 0 {
		return "", usageErrorf("--%s: %s: the first line is empty; a password is required", flag, path)
	}
	return string(line), nil
}

func (a *app) runEtcdSetup(ctx context.Context, o etcdSetupOpts) error {
	if (o.passwordFile == "") == !o.noPassword {
		return usageErrorf("--password-file and --no-password: give exactly one")
	}
	if o.rootPasswordFile != "" && !o.enableAuth {
		return usageErrorf("--root-password-file: only with --enable-auth")
	}
	var password, rootPassword string
	var err error
	if o.passwordFile != "" {
		if password, err = readPasswordFile("password-file", o.passwordFile); err != nil {
			return err
		}
	}
	if o.rootPasswordFile != "" {
		if rootPassword, err = readPasswordFile("root-password-file", o.rootPasswordFile); err != nil {
			return err
		}
	}
	st, done, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer done()
	s := &etcdSetup{cli: st.Client(), out: a.stdout}
	name := "understudy-" + a.cluster
	if err := s.ensureRole(ctx, name, st.Prefix()); err != nil {
		return err
	}
	if err := s.ensureUser(ctx, name, password); err != nil {
		return err
	}
	if err := s.ensureGrant(ctx, name, name); err != nil {
		return err
	}
	if o.enableAuth {
		if err := s.ensureAuth(ctx, rootPassword); err != nil {
			return err
		}
	}
	if s.changes == 0 {
		_, _ = fmt.Fprintln(a.stdout, "nothing changed")
	}
	return nil
}

// etcdSetup applies the RBAC objects one at a time, each only when missing, so a second
// run (or a run after a partial failure) does no more than what is still missing.
type etcdSetup struct {
	cli     *clientv3.Client
	out     io.Writer
	changes int
}

func (s *etcdSetup) say(format string, args ...any) {
	_, _ = fmt.Fprintf(s.out, format+"\n", args...)
}

func (s *etcdSetup) changed(format string, args ...any) {
	s.changes++
	s.say(format, args...)
}

// ensureRole makes role hold readwrite on exactly [prefix, prefix end): a permission
// left over from elsewhere would widen what a compromised node can touch.
func (s *etcdSetup) ensureRole(ctx context.Context, role, prefix string) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	resp, err := s.cli.RoleGet(ctx, role)
	switch {
	case errors.Is(err, rpctypes.ErrRoleNotFound):
		if _, err := s.cli.RoleAdd(ctx, role); err != nil {
			return fmt.Errorf("etcd-setup: add role %s: %w", role, err)
		}
		s.changed("role %s: created", role)
		resp = &clientv3.AuthRoleGetResponse{}
	case err != nil:
		return fmt.Errorf("etcd-setup: get role %s: %w", role, err)
	}
	have := false
	for _, p := range resp.Perm {
		if string(p.Key) == prefix && string(p.RangeEnd) == end {
			have = p.PermType == authpb.READWRITE
			continue
		}
		if _, err := s.cli.RoleRevokePermission(ctx, role, string(p.Key), string(p.RangeEnd)); err != nil {
			return fmt.Errorf("etcd-setup: revoke [%q, %q) from role %s: %w", p.Key, p.RangeEnd, role, err)
		}
		s.changed("role %s: revoked %s on [%q, %q)", role, p.PermType, p.Key, p.RangeEnd)
	}
	if have {
		s.say("role %s: already has readwrite on prefix %q", role, prefix)
		return nil
	}
	// Granting the same range again replaces its permission type (e.g. READ).
	if _, err := s.cli.RoleGrantPermission(ctx, role, prefix, end, clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
		return fmt.Errorf("etcd-setup: grant readwrite on prefix %q to role %s: %w", prefix, role, err)
	}
	s.changed("role %s: granted readwrite on prefix %q", role, prefix)
	return nil
}

// ensureUser creates user with password, or without one when password is "". An
// existing user's password is left alone: it cannot be compared, and rewriting it on
// every run would not be idempotent.
func (s *etcdSetup) ensureUser(ctx context.Context, user, password string) error {
	_, err := s.cli.UserGet(ctx, user)
	switch {
	case err == nil:
		s.say("user %s: exists (password not changed)", user)
		return nil
	case !errors.Is(err, rpctypes.ErrUserNotFound):
		return fmt.Errorf("etcd-setup: get user %s: %w", user, err)
	}
	how := "with password"
	if password == "" {
		how = "without password (client certificate CN=" + user + ")"
		_, err = s.cli.UserAddWithOptions(ctx, user, "", &clientv3.UserAddOptions{NoPassword: true})
	} else {
		_, err = s.cli.UserAdd(ctx, user, password)
	}
	if err != nil {
		return fmt.Errorf("etcd-setup: add user %s: %w", user, err)
	}
	s.changed("user %s: created %s", user, how)
	return nil
}

func (s *etcdSetup) ensureGrant(ctx context.Context, user, role string) error {
	resp, err := s.cli.UserGet(ctx, user)
	if err != nil {
		return fmt.Errorf("etcd-setup: get user %s: %w", user, err)
	}
	if slices.Contains(resp.Roles, role) {
		s.say("user %s: already has role %s", user, role)
		return nil
	}
	if _, err := s.cli.UserGrantRole(ctx, user, role); err != nil {
		return fmt.Errorf("etcd-setup: grant role %s to user %s: %w", role, user, err)
	}
	s.changed("user %s: granted role %s", user, role)
	return nil
}

// ensureAuth creates the root role and user when missing (etcd refuses auth enable
// without them) and enables authentication last, so that everything before it still
// ran with the administrator's pre-auth access.
func (s *etcdSetup) ensureAuth(ctx context.Context, rootPassword string) error {
	_, err := s.cli.RoleGet(ctx, etcdRoot)
	switch {
	case errors.Is(err, rpctypes.ErrRoleNotFound):
		if _, err := s.cli.RoleAdd(ctx, etcdRoot); err != nil {
			return fmt.Errorf("etcd-setup: add role %s: %w", etcdRoot, err)
		}
		s.changed("role %s: created", etcdRoot)
	case err != nil:
		return fmt.Errorf("etcd-setup: get role %s: %w", etcdRoot, err)
	}
	if err := s.ensureUser(ctx, etcdRoot, rootPassword); err != nil {
		return err
	}
	if err := s.ensureGrant(ctx, etcdRoot, etcdRoot); err != nil {
		return err
	}
	st, err := s.cli.AuthStatus(ctx)
	if err != nil {
		return fmt.Errorf("etcd-setup: auth status: %w", err)
	}
	if st.Enabled {
		s.say("auth: already enabled")
		return nil
	}
	if _, err := s.cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcd-setup: enable auth: %w", err)
	}
	s.changed("auth: enabled")
	return nil
}
