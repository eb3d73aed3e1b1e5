package iscsi

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns matches one of them
// with errors.Is (login failures through *LoginError). Callers must not
// compare strings.
var (
	// ErrBadURL: ParseURL input is not iscsi://[user[:secret]@]host[:port]/<iqn>/<lun>.
	ErrBadURL = errors.New("fence/iscsi: bad iscsi URL")
	// ErrConfig: a Config field is missing or out of range.
	ErrConfig = errors.New("fence/iscsi: bad config")

	// ErrLogin: the target refused the login (every *LoginError matches).
	ErrLogin = errors.New("fence/iscsi: login failed")
	// ErrAuth: CHAP failed or the target requires authentication (status 0201).
	ErrAuth = errors.New("fence/iscsi: authentication failed")
	// ErrAuthorization: the initiator may not access this target (0202).
	ErrAuthorization = errors.New("fence/iscsi: not authorized")
	// ErrTargetNotFound: no such target name at this portal (0203, 0204).
	ErrTargetNotFound = errors.New("fence/iscsi: target not found")
	// ErrRedirect: the target moved (status class 1); see LoginError.TargetAddress.
	ErrRedirect = errors.New("fence/iscsi: target redirected the login")
	// ErrTargetBusy: the target is temporarily unable to accept the login (class 3).
	ErrTargetBusy = errors.New("fence/iscsi: target unavailable")
	// ErrNegotiation: login parameter negotiation produced an unusable result.
	ErrNegotiation = errors.New("fence/iscsi: parameter negotiation failed")

	// ErrProtocol: the target sent something RFC 7143 does not allow; the
	// connection is dropped.
	ErrProtocol = errors.New("fence/iscsi: protocol error")
	// ErrDigest: a header or data CRC32C digest did not match; the
	// connection is dropped (ErrorRecoveryLevel 0).
	ErrDigest = errors.New("fence/iscsi: digest error")
	// ErrConnectionLost: the TCP connection failed or was dropped while the
	// command was outstanding. The command may or may not have reached the
	// device server.
	ErrConnectionLost = errors.New("fence/iscsi: connection lost")
	// ErrKeepaliveTimeout: the target did not answer a NOP-Out ping in time
	// (also matches ErrConnectionLost).
	ErrKeepaliveTimeout = fmt.Errorf("%w: keepalive timeout", ErrConnectionLost)
	// ErrTargetFailure: the SCSI Response carried iSCSI response code
	// "target failure" (the command did not complete at the target).
	ErrTargetFailure = errors.New("fence/iscsi: target failure")
	// ErrRejected: the target rejected the PDU (Reject PDU).
	ErrRejected = errors.New("fence/iscsi: PDU rejected by target")
	// ErrTaskManagement: a task management function was refused or failed.
	ErrTaskManagement = errors.New("fence/iscsi: task management function failed")
	// ErrClosed: the Session was closed.
	ErrClosed = errors.New("fence/iscsi: session closed")
)

// LoginError is a login refused by the target with a non-zero Status-Class
// (RFC 7143 section 11.13.5). It matches ErrLogin and the sentinel of its
// class/detail (ErrAuth, ErrAuthorization, ErrTargetNotFound, ErrRedirect,
// ErrTargetBusy).
type LoginError struct {
	Class, Detail byte
	// TargetAddress is the redirect address ("host:port[,tpgt]") for class 1.
	// The initiator does not follow redirects itself.
	TargetAddress string
}

func (e *LoginError) Error() string {
	s := fmt.Sprintf("fence/iscsi: login failed: status 0x%02x%02x (%s)", e.Class, e.Detail, loginStatusText(e.Class, e.Detail))
	if e.TargetAddress != "" {
		s += " to " + e.TargetAddress
	}
	return s
}

// Is maps the status class/detail to the package sentinels.
func (e *LoginError) Is(target error) bool {
	switch target {
	case ErrLogin:
		return true
	case ErrRedirect:
		return e.Class == 1
	case ErrAuth:
		return e.Class == 2 && e.Detail == 1
	case ErrAuthorization:
		return e.Class == 2 && e.Detail == 2
	case ErrTargetNotFound:
		return e.Class == 2 && (e.Detail == 3 || e.Detail == 4)
	case ErrTargetBusy:
		return e.Class == 3
	}
	return false
}

func loginStatusText(class, detail byte) string {
	switch class {
	case 1:
		if detail == 2 {
			return "target moved permanently"
		}
		return "target moved temporarily"
	case 2:
		texts := []string{"initiator error", "authentication failure", "authorization failure",
			"not found", "target removed", "unsupported version", "too many connections",
			"missing parameter", "can't include in session", "session type not supported",
			"session does not exist", "invalid request during login"}
		if int(detail) < len(texts) {
			return texts[detail]
		}
		return "initiator error"
	case 3:
		switch detail {
		case 1:
			return "service unavailable"
		case 2:
			return "out of resources"
		}
		return "target error"
	}
	return "unknown status class"
}
