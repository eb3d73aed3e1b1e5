//go:build linux

package fence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// Linux SCSI generic v3 interface (include/scsi/sg.h).
const (
	sgIO            = 0x2285
	sgDxferNone     = -1
	sgDxferToDev    = -2
	sgDxferFromDev  = -3
	sgInfoOKMask    = 0x1
	senseBufferSize = 252 // SPC-4 maximum sense length
	// DefaultSGIOTimeout bounds one SG_IO command when ctx has no sooner
	// deadline. The ioctl cannot be interrupted; the kernel's timeout (and
	// its error handler) is what bounds it.
	DefaultSGIOTimeout = 30 * time.Second
)

// sgIOHdr mirrors struct sg_io_hdr (64-bit layout, 88 bytes).
type sgIOHdr struct {
	interfaceID    int32
	dxferDirection int32
	cmdLen         uint8
	mxSbLen        uint8
	iovecCount     uint16
	dxferLen       uint32
	dxferp         unsafe.Pointer
	cmdp           unsafe.Pointer
	sbp            unsafe.Pointer
	timeout        uint32
	flags          uint32
	packID         int32
	usrPtr         unsafe.Pointer
	status         uint8
	maskedStatus   uint8
	msgStatus      uint8
	sbLenWr        uint8
	hostStatus     uint16
	driverStatus   uint16
	resid          int32
	duration       uint32
	info           uint32
}

// SGIO is a Transport over the Linux SG_IO ioctl on a block device
// (/dev/sdX) or SCSI generic node (/dev/sgN). Safe for concurrent use: the
// kernel queues concurrent ioctls on one descriptor.
type SGIO struct {
	path string
	f    *os.File
}

// OpenSGIO opens path read-write (O_NONBLOCK so that opening does not wait
// for a not-ready medium) for SG_IO.
func OpenSGIO(path string) (*SGIO, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fence: open %s for SG_IO: %w", path, err)
	}
	return &SGIO{path: path, f: f}, nil
}

// Path is the device node.
func (s *SGIO) Path() string { return s.path }

// Close closes the device node.
func (s *SGIO) Close() error { return s.f.Close() }

// Execute issues cmd with SG_IO. Host or driver errors (path down,
// command timed out in the kernel) are transport errors.
func (s *SGIO) Execute(ctx context.Context, cmd scsi.Command) (scsi.Response, error) {
	if err := ctx.Err(); err != nil {
		return scsi.Response{}, err
	}
	if len(cmd.CDB) == 0 || len(cmd.CDB) > 255 {
		return scsi.Response{}, fmt.Errorf("fence: SG_IO %s: CDB length %d not in 1..255", s.path, len(cmd.CDB))
	}
	if len(cmd.DataOut) > 0 && cmd.DataInLen > 0 {
		return scsi.Response{}, fmt.Errorf("fence: SG_IO %s: bidirectional commands not supported", s.path)
	}
	sense := make([]byte, senseBufferSize)
	hdr := sgIOHdr{interfaceID: 'S', dxferDirection: sgDxferNone, cmdLen: uint8(len(cmd.CDB)), mxSbLen: senseBufferSize,
		cmdp: unsafe.Pointer(&cmd.CDB[0]), sbp: unsafe.Pointer(&sense[0]), timeout: sgTimeout(ctx)}
	var in []byte
	switch {
	case len(cmd.DataOut) > 0:
		hdr.dxferDirection, hdr.dxferLen, hdr.dxferp = sgDxferToDev, uint32(len(cmd.DataOut)), unsafe.Pointer(&cmd.DataOut[0])
	case cmd.DataInLen > 0:
		in = make([]byte, cmd.DataInLen)
		hdr.dxferDirection, hdr.dxferLen, hdr.dxferp = sgDxferFromDev, uint32(len(in)), unsafe.Pointer(&in[0])
	}
	err := s.ioctl(&hdr)
	runtime.KeepAlive(cmd.CDB)
	runtime.KeepAlive(cmd.DataOut)
	runtime.KeepAlive(in)
	runtime.KeepAlive(sense)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
		return scsi.Response{}, fmt.Errorf("fence: SG_IO %s: %w: %w", s.path, ErrNotSCSI, err)
	}
	if err != nil {
		return scsi.Response{}, fmt.Errorf("fence: SG_IO %s: %w", s.path, err)
	}
	if err := hostDriverError(&hdr); err != nil {
		return scsi.Response{}, fmt.Errorf("fence: SG_IO %s: %w", s.path, err)
	}
	resp := scsi.Response{Status: scsi.Status(hdr.status)}
	if hdr.sbLenWr > 0 {
		resp.Sense = sense[:hdr.sbLenWr]
	}
	if in != nil {
		n := len(in) - int(hdr.resid)
		resp.DataIn = in[:max(0, min(n, len(in)))]
	}
	return resp, nil
}

func (s *SGIO) ioctl(hdr *sgIOHdr) error {
	rc, err := s.f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if cerr := rc.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, sgIO, uintptr(unsafe.Pointer(hdr)))
			if errno != unix.EINTR {
				return
			}
		}
	}); cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// sgTimeout converts ctx's deadline to the ioctl's millisecond timeout.
func sgTimeout(ctx context.Context) uint32 {
	d := DefaultSGIOTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	return uint32(max(d.Milliseconds(), 1))
}

// hostDriverError maps host_status/driver_status to an error. A driver
// status of DRIVER_SENSE (0x08) only says sense data is present.
func hostDriverError(h *sgIOHdr) error {
	if h.info&sgInfoOKMask == 0 {
		return nil
	}
	driver := h.driverStatus &^ 0x08
	if h.hostStatus == 0 && driver == 0 {
		return nil
	}
	return fmt.Errorf("%w: host_status 0x%02x (%s) driver_status 0x%02x", ErrPathFailed, h.hostStatus, hostStatusName(h.hostStatus), h.driverStatus)
}

func hostStatusName(s uint16) string {
	names := map[uint16]string{
		0x00: "DID_OK", 0x01: "DID_NO_CONNECT", 0x02: "DID_BUS_BUSY", 0x03: "DID_TIME_OUT",
		0x04: "DID_BAD_TARGET", 0x05: "DID_ABORT", 0x06: "DID_PARITY", 0x07: "DID_ERROR",
		0x08: "DID_RESET", 0x09: "DID_BAD_INTR", 0x0a: "DID_PASSTHROUGH", 0x0b: "DID_SOFT_ERROR",
		0x0c: "DID_IMM_RETRY", 0x0d: "DID_REQUEUE", 0x0e: "DID_TRANSPORT_DISRUPTED",
		0x0f: "DID_TRANSPORT_FAILFAST", 0x11: "DID_TRANSPORT_MARGINAL",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return "unknown"
}
