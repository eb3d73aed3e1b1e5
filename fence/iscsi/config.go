package iscsi

import (
	"encoding/binary"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Defaults used when the Config field is zero.
const (
	DefaultMaxRecvDataSegmentLength = 256 << 10
	DefaultFirstBurstLength         = 64 << 10
	DefaultMaxBurstLength           = 1 << 20
	DefaultLoginTimeout             = 10 * time.Second
	DefaultNopInterval              = 5 * time.Second
	DefaultNopTimeout               = 10 * time.Second
	DefaultAbortTimeout             = 5 * time.Second
	DefaultLogoutTimeout            = 5 * time.Second
)

// Config is the initiator side of a session. The zero value of every field
// except InitiatorName and ISID means "default".
type Config struct {
	// InitiatorName is our iSCSI name (iqn./eui./naa.). Required.
	InitiatorName string
	// ISID is the initiator session identifier: together with
	// InitiatorName it names the SCSI initiator port, the "I" of the I_T
	// nexus that persistent reservations are registered for. Keep it
	// stable per node (ISIDFromNodeID). Required (all-zero is refused).
	//
	// WARNING: two sessions from the same InitiatorName+ISID to the same
	// target reinstate each other (RFC 7143 section 6.3.5): open one
	// Session per target per ISID, or vary the ISID (ISIDFromNodeIDIndex).
	ISID [6]byte
	// CHAPUser and CHAPSecret enable one-way CHAP (MD5). Credentials in the
	// URL take precedence. The secret is never logged or put in errors.
	CHAPUser, CHAPSecret string
	// HeaderDigest and DataDigest require CRC32C; login fails with
	// ErrNegotiation when the target refuses. false offers None only.
	HeaderDigest, DataDigest bool
	// MaxRecvDataSegmentLength we declare (512..2^24-1).
	MaxRecvDataSegmentLength int
	// FirstBurstLength and MaxBurstLength we propose (512..2^24-1); the
	// target's answer (the minimum) is used.
	FirstBurstLength, MaxBurstLength int
	// InitialR2T proposes InitialR2T=Yes (no unsolicited Data-Out). The
	// result is Yes when either side says Yes.
	InitialR2T bool
	// NoImmediateData proposes ImmediateData=No.
	NoImmediateData bool
	// LoginTimeout bounds a whole login (TCP connect included).
	LoginTimeout time.Duration
	// NopInterval is how often we ping the target with NOP-Out; negative
	// disables keepalive. NopTimeout is how long a ping may stay
	// unanswered before the connection is declared dead.
	NopInterval, NopTimeout time.Duration
	// AbortTimeout bounds the ABORT TASK sent when a command's context ends;
	// if it expires the connection is dropped (which aborts everything).
	AbortTimeout time.Duration
	// Logger receives connection events; nil means zap.NewNop().
	Logger *zap.Logger
}

// ISIDFromNodeID derives a stable ISID from a node id (index 0); see
// ISIDFromNodeIDIndex.
func ISIDFromNodeID(id uint32) [6]byte { return ISIDFromNodeIDIndex(id, 0) }

// ISIDFromNodeIDIndex derives a stable ISID in the "random" format
// (T=10b, RFC 7143 section 10.12.5: byte 0 = 0x80, B/C/D free): bytes 1-4
// are the node id (big endian) and byte 5 is index, so one node can hold
// up to 256 concurrent sessions to the same target (e.g. one per LUN)
// without reinstating its own sessions.
func ISIDFromNodeIDIndex(id uint32, index uint8) [6]byte {
	var b [6]byte
	b[0] = 0x80
	binary.BigEndian.PutUint32(b[1:5], id)
	b[5] = index
	return b
}

// withDefaults validates cfg and fills defaults.
func (cfg Config) withDefaults() (Config, error) {
	if err := checkName(cfg.InitiatorName); err != nil {
		return cfg, fmt.Errorf("%w: InitiatorName: %v", ErrConfig, err)
	}
	if cfg.ISID == ([6]byte{}) {
		return cfg, fmt.Errorf("%w: ISID: must be set (use ISIDFromNodeID)", ErrConfig)
	}
	if cfg.CHAPUser == "" && cfg.CHAPSecret != "" || cfg.CHAPUser != "" && cfg.CHAPSecret == "" {
		return cfg, fmt.Errorf("%w: CHAPUser/CHAPSecret: set both or neither", ErrConfig)
	}
	def := func(v *int, d int, name string) error {
		if *v == 0 {
			*v = d
		}
		if *v < 512 || *v > maxDataSegLen {
			return fmt.Errorf("%w: %s: %d not in [512, %d]", ErrConfig, name, *v, maxDataSegLen)
		}
		return nil
	}
	if err := def(&cfg.MaxRecvDataSegmentLength, DefaultMaxRecvDataSegmentLength, "MaxRecvDataSegmentLength"); err != nil {
		return cfg, err
	}
	if err := def(&cfg.FirstBurstLength, DefaultFirstBurstLength, "FirstBurstLength"); err != nil {
		return cfg, err
	}
	if err := def(&cfg.MaxBurstLength, DefaultMaxBurstLength, "MaxBurstLength"); err != nil {
		return cfg, err
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	dur(&cfg.LoginTimeout, DefaultLoginTimeout)
	dur(&cfg.NopInterval, DefaultNopInterval)
	dur(&cfg.NopTimeout, DefaultNopTimeout)
	dur(&cfg.AbortTimeout, DefaultAbortTimeout)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return cfg, nil
}
