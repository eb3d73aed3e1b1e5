package lease

import (
	"fmt"
	"regexp"
	"strings"
)

// Key layout below the prefix; see doc.go. Directory names end with "/" so that a node
// called "a" never matches the keys of a node called "ab".
const (
	dirNodes     = "nodes/"
	dirIDs       = "nodes-ids/"
	keyIDNext    = "nodes-ids-next"
	dirCordoned  = "cordoned/"
	dirQualified = "qualified/"
	dirRoles     = "roles/"
	keySpec      = "spec"
	dirEvents    = "events/"
	dirCommands  = "commands/"

	suffixClaim  = "/claim"
	suffixLast   = "/last"
	suffixTarget = "/target"
	suffixFence  = "/fencing"
)

var (
	// roleNameRE is the spec's rule for role names: a DNS-label-like lower-case word.
	roleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// nodeNameRE allows lower-case host names (also with dots) but never "/" or spaces,
	// because a node name is an etcd key component and a fence-agent argument. The agent
	// configuration uses the same rule (NodeNameRule), so every name the CLI accepts is
	// one an agent can run with.
	nodeNameRE = regexp.MustCompile(`^` + NodeNameRule + `$`)
	// idRE is for command ids: key components chosen by callers.
	idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
)

// Prefix returns the default key prefix of a cluster: "/understudy/<cluster>/".
func Prefix(cluster string) string {
	return "/understudy/" + cluster + "/"
}

// NodeNameRule is the syntax of node (and cluster) names: 1-63 lower-case letters,
// digits, '.' and '-', starting with a letter or digit.
const NodeNameRule = `[a-z0-9][a-z0-9.-]{0,62}`

// CheckNodeName returns nil if name can be used as a node name (NodeNameRule).
func CheckNodeName(name string) error {
	if !nodeNameRE.MatchString(name) {
		return fmt.Errorf("%w: node name %q: want %s (lower-case letters, digits, '.', '-')",
			ErrInvalidName, name, NodeNameRule)
	}
	return nil
}

// CheckRoleName returns nil if name can be used as a role name: 1-63 characters of
// lower-case letters, digits and '-', starting with a letter or digit.
func CheckRoleName(name string) error {
	if !roleNameRE.MatchString(name) {
		return fmt.Errorf("%w: role name %q: want [a-z0-9][a-z0-9-]{0,62}", ErrInvalidName, name)
	}
	return nil
}

func (s *Store) key(rel string) string             { return s.prefix + rel }
func (s *Store) nodeKey(node string) string        { return s.prefix + dirNodes + node }
func (s *Store) idKey(node string) string          { return s.prefix + dirIDs + node }
func (s *Store) cordonKey(node string) string      { return s.prefix + dirCordoned + node }
func (s *Store) qualifyKey(node string) string     { return s.prefix + dirQualified + node }
func (s *Store) claimKey(role string) string       { return s.prefix + dirRoles + role + suffixClaim }
func (s *Store) lastKey(role string) string        { return s.prefix + dirRoles + role + suffixLast }
func (s *Store) targetKey(role string) string      { return s.prefix + dirRoles + role + suffixTarget }
func (s *Store) fencingKey(role string) string     { return s.prefix + dirRoles + role + suffixFence }
func (s *Store) commandDir(node string) string     { return s.prefix + dirCommands + node + "/" }
func (s *Store) commandKey(node, id string) string { return s.commandDir(node) + id }

// roleKeyParts splits "roles/<role>/<leaf>" (relative to the prefix) into role and leaf.
func roleKeyParts(rel string) (role, leaf string, ok bool) {
	rest, ok := strings.CutPrefix(rel, dirRoles)
	if !ok {
		return "", "", false
	}
	role, leaf, ok = strings.Cut(rest, "/")
	return role, leaf, ok && role != "" && !strings.Contains(leaf, "/")
}
