package iscsi

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is the IANA iSCSI port.
const DefaultPort = 3260

// maxLUN is the highest LUN the 2-byte flat space addressing we use encodes.
const maxLUN = 16383

// Target names one logical unit behind an iSCSI portal.
type Target struct {
	// Addr is the portal, "host:port".
	Addr string
	// IQN is the target name (iqn., eui. or naa. format).
	IQN string
	// LUN is the logical unit number (0..16383).
	LUN uint64
	// User and Secret are CHAP credentials from the URL (empty if none).
	User, Secret string
}

// String renders the target as a URL with the secret redacted.
func (t Target) String() string {
	u := url.URL{Scheme: "iscsi", Host: t.Addr, Path: "/" + t.IQN + "/" + strconv.FormatUint(t.LUN, 10)}
	if t.User != "" {
		if t.Secret != "" {
			u.User = url.UserPassword(t.User, "xxxxx")
		} else {
			u.User = url.User(t.User)
		}
	}
	return u.String()
}

// ParseURL parses iscsi://[user[:secret]@]host[:port]/<iqn>/<lun>. The port
// defaults to 3260; IPv6 hosts go in brackets. Errors match ErrBadURL, name
// the part that is wrong and never contain the secret.
func ParseURL(s string) (Target, error) {
	shown := redactURL(s)
	bad := func(part, format string, a ...any) error {
		return fmt.Errorf("%w %q: %s: %s", ErrBadURL, shown, part, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, bad("syntax", "not a URL")
	}
	if u.Scheme != "iscsi" {
		return Target{}, bad("scheme", "%q, want iscsi", u.Scheme)
	}
	if u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" {
		return Target{}, bad("syntax", "want iscsi://host[:port]/<iqn>/<lun> without query or fragment")
	}
	var t Target
	if u.User != nil {
		t.User = u.User.Username()
		t.Secret, _ = u.User.Password()
		if t.User == "" {
			return Target{}, bad("user", "empty CHAP user name")
		}
	}
	if t.Addr, err = parseHostPort(u.Host); err != nil {
		return Target{}, bad("host", "%v", err)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 2 {
		return Target{}, bad("path", "want /<iqn>/<lun>, got %q", u.Path)
	}
	if err := checkName(parts[0]); err != nil {
		return Target{}, bad("iqn", "%v", err)
	}
	t.IQN = parts[0]
	lun, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || lun > maxLUN {
		return Target{}, bad("lun", "%q, want a decimal number in [0, %d]", parts[1], maxLUN)
	}
	t.LUN = lun
	return t, nil
}

func parseHostPort(hp string) (string, error) {
	if hp == "" {
		return "", fmt.Errorf("missing")
	}
	host, port := hp, strconv.Itoa(DefaultPort)
	if h, p, err := net.SplitHostPort(hp); err == nil {
		host, port = h, p
	} else if strings.HasPrefix(hp, "[") && strings.HasSuffix(hp, "]") {
		host = hp[1 : len(hp)-1]
	} else if strings.Contains(hp, ":") {
		return "", fmt.Errorf("%q: bad host:port (IPv6 needs brackets)", hp)
	}
	if host == "" {
		return "", fmt.Errorf("empty host name")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q, want 1-65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

// checkName accepts an iSCSI name: iqn./eui./naa. prefix, at most 223 bytes,
// no whitespace, NUL, '/' or '%' (RFC 7143 section 4.2.7 and RFC 3722).
func checkName(name string) error {
	if name == "" {
		return fmt.Errorf("empty iSCSI name")
	}
	if len(name) > 223 {
		return fmt.Errorf("%d bytes, iSCSI names are at most 223", len(name))
	}
	lower := strings.ToLower(name)
	if !strings.HasPrefix(lower, "iqn.") && !strings.HasPrefix(lower, "eui.") && !strings.HasPrefix(lower, "naa.") {
		return fmt.Errorf("%q must start with one of iqn. eui. naa", name)
	}
	for _, c := range name {
		if c <= ' ' || c == '/' || c == '%' || c == 0x7f {
			return fmt.Errorf("%q has forbidden character %q", name, c)
		}
	}
	return nil
}

// redactURL replaces the password of an iscsi URL with xxxxx for error
// messages, even when the rest does not parse.
func redactURL(s string) string {
	rest, ok := strings.CutPrefix(s, "iscsi://")
	if !ok {
		if i := strings.Index(s, "://"); i >= 0 {
			rest, s = s[i+3:], s[:i+3]
		} else {
			return s
		}
	} else {
		s = "iscsi://"
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s + rest
	}
	user := rest[:at]
	if i := strings.Index(user, ":"); i >= 0 {
		user = user[:i] + ":xxxxx"
	}
	return s + user + rest[at:]
}
