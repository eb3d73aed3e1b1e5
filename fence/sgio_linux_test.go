//go:build linux

package fence

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/understudy-ha/understudy/fence/scsi"
)

func TestSGIOHeaderLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("layout checked for 64-bit only")
	}
	if got := unsafe.Sizeof(sgIOHdr{}); got != 88 {
		t.Errorf("sizeof(sg_io_hdr) = %d, want 88", got)
	}
	var h sgIOHdr
	offsets := []struct {
		name string
		got  uintptr
		want uintptr
	}{
		{"dxfer_len", unsafe.Offsetof(h.dxferLen), 12},
		{"dxferp", unsafe.Offsetof(h.dxferp), 16},
		{"cmdp", unsafe.Offsetof(h.cmdp), 24},
		{"sbp", unsafe.Offsetof(h.sbp), 32},
		{"timeout", unsafe.Offsetof(h.timeout), 40},
		{"usr_ptr", unsafe.Offsetof(h.usrPtr), 56},
		{"status", unsafe.Offsetof(h.status), 64},
		{"host_status", unsafe.Offsetof(h.hostStatus), 68},
		{"resid", unsafe.Offsetof(h.resid), 72},
		{"info", unsafe.Offsetof(h.info), 80},
	}
	for _, o := range offsets {
		t.Run(o.name, func(t *testing.T) {
			if o.got != o.want {
				t.Errorf("offset %d, want %d", o.got, o.want)
			}
		})
	}
}

func TestSGIONotSCSI(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := OpenSGIO("/nonexistent/sdz"); err == nil {
		t.Error("opened a missing node")
	}
	s, err := OpenSGIO("/dev/null")
	if err != nil {
		t.Skipf("cannot open /dev/null read-write: %v", err)
	}
	defer s.Close()
	_, err = s.Execute(ctx, scsi.TestUnitReady())
	if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		t.Errorf("SG_IO on /dev/null: %v, want ENOTTY", err)
	}
	if _, err := s.Execute(ctx, scsi.Command{}); err == nil {
		t.Error("empty CDB accepted")
	}
}

func TestHostDriverError(t *testing.T) {
	tests := []struct {
		name string
		h    sgIOHdr
		want bool
	}{
		{"ok", sgIOHdr{}, false},
		{"check condition with driver sense only", sgIOHdr{info: 1, status: 2, driverStatus: 0x08}, false},
		{"no connect", sgIOHdr{info: 1, hostStatus: 0x01}, true},
		{"driver timeout", sgIOHdr{info: 1, driverStatus: 0x06}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := hostDriverError(&tc.h)
			if (err != nil) != tc.want || (err != nil && !errors.Is(err, ErrPathFailed)) {
				t.Errorf("err = %v, want error %v", err, tc.want)
			}
		})
	}
}

func TestSGTimeout(t *testing.T) {
	if got := sgTimeout(context.Background()); got != uint32(DefaultSGIOTimeout.Milliseconds()) {
		t.Errorf("no deadline: %d", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if got := sgTimeout(ctx); got > 2000 || got < 1000 {
		t.Errorf("2s deadline: %d ms", got)
	}
}
