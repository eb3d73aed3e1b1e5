package iscsi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/understudy-ha/understudy/fence/scsi"
)

// DefaultIOTimeout bounds each ReadAt/WriteAt/Sync call without a context.
const DefaultIOTimeout = 30 * time.Second

// maxUARetries bounds how often Device resends a command answered with
// UNIT ATTENTION (each UA reports one event; a few can be queued).
const maxUARetries = 4

// maxTransfer is the most one READ(16)/WRITE(16) moves; larger I/O is split.
const maxTransfer = 1 << 20

// Device is block I/O over a Session's LUN with READ(16)/WRITE(16). ReadAt
// and WriteAt implement io.ReaderAt and io.WriterAt with a per-call timeout
// (DefaultIOTimeout, see WithTimeout); the ...Context variants take a ctx.
//
// A command answered with UNIT ATTENTION (which tgtd raises on the first
// command of every new session, and after resets or PR changes) is sent
// again, up to maxUARetries times: a UNIT ATTENTION means the command was
// not executed, and the retry passes the same reservation checks, so a
// fenced node still gets RESERVATION CONFLICT.
//
// Unaligned I/O is allowed. Reads read the covering blocks. Writes that do
// not start and end on block boundaries read-modify-write the edge blocks;
// WARNING: that is atomic only against other writes through this Device
// (and its WithTimeout copies), not against other initiators.
type Device struct {
	s         *Session
	blockSize int
	blocks    uint64
	timeout   time.Duration
	rmw       *sync.RWMutex // aligned writes share it, read-modify-write excludes
}

// Device reads the LUN's capacity (READ CAPACITY(16)) and returns a Device.
func (s *Session) Device(ctx context.Context) (*Device, error) {
	resp, err := executeUA(ctx, s, scsi.ReadCapacity16())
	if err != nil {
		return nil, err
	}
	if err := resp.Err(); err != nil {
		return nil, fmt.Errorf("fence/iscsi: READ CAPACITY(16) on %s: %w", s.target, err)
	}
	rc, err := scsi.ParseReadCapacity16(resp.DataIn)
	if err != nil {
		return nil, fmt.Errorf("fence/iscsi: READ CAPACITY(16) on %s: %w", s.target, err)
	}
	if rc.BlockSize > maxTransfer || rc.BlockSize&(rc.BlockSize-1) != 0 {
		return nil, fmt.Errorf("fence/iscsi: %s: unsupported block size %d", s.target, rc.BlockSize)
	}
	return &Device{s: s, blockSize: int(rc.BlockSize), blocks: rc.Blocks(), timeout: DefaultIOTimeout, rmw: &sync.RWMutex{}}, nil
}

// WithTimeout returns a Device sharing d's session whose ReadAt, WriteAt
// and Sync use timeout instead of DefaultIOTimeout.
func (d *Device) WithTimeout(timeout time.Duration) *Device {
	c := *d
	c.timeout = timeout
	return &c
}

// Size is the capacity in bytes.
func (d *Device) Size() int64 { return int64(d.blocks) * int64(d.blockSize) }

// BlockSize is the logical block size in bytes.
func (d *Device) BlockSize() int { return d.blockSize }

// ReadAt implements io.ReaderAt.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	return d.ReadAtContext(ctx, p, off)
}

// WriteAt implements io.WriterAt.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	return d.WriteAtContext(ctx, p, off)
}

// Sync flushes the device's volatile cache (SYNCHRONIZE CACHE(16)).
func (d *Device) Sync(ctx context.Context) error {
	resp, err := executeUA(ctx, d.s, scsi.SynchronizeCache16(0, 0))
	if err != nil {
		return err
	}
	if err := resp.Err(); err != nil {
		return fmt.Errorf("fence/iscsi: SYNCHRONIZE CACHE(16) on %s: %w", d.s.target, err)
	}
	return nil
}

// ReadAtContext reads len(p) bytes at off. Like io.ReaderAt it returns
// io.EOF when the read reaches past the end of the device.
func (d *Device) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset %d", ErrConfig, off)
	}
	if off >= d.Size() {
		return 0, io.EOF
	}
	want := min(int64(len(p)), d.Size()-off)
	bs := int64(d.blockSize)
	n := 0
	for int64(n) < want {
		pos := off + int64(n)
		first := pos / bs
		chunk := min(want-int64(n), maxTransfer-(pos%bs))
		last := (pos + chunk - 1) / bs
		buf, err := d.readBlocks(ctx, uint64(first), uint32(last-first+1))
		if err != nil {
			return n, err
		}
		n += copy(p[n:want], buf[pos-first*bs:])
	}
	if int64(n) < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAtContext writes p at off. Writing past the end of the device is
// an error (nothing beyond it is written).
func (d *Device) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.Size() {
		return 0, fmt.Errorf("%w: write of %d bytes at %d outside the %d-byte device", ErrConfig, len(p), off, d.Size())
	}
	bs := int64(d.blockSize)
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if head := pos % bs; head != 0 || int64(len(p)-n) < bs {
			m, err := d.writePartial(ctx, p[n:], pos)
			n += m
			if err != nil {
				return n, err
			}
			continue
		}
		chunk := min(int64(len(p)-n), maxTransfer) / bs * bs
		d.rmw.RLock()
		err := d.writeBlocks(ctx, uint64(pos/bs), p[n:n+int(chunk)])
		d.rmw.RUnlock()
		if err != nil {
			return n, err
		}
		n += int(chunk)
	}
	return n, nil
}

// writePartial read-modify-writes the one block containing pos and returns
// how many bytes of p it stored.
func (d *Device) writePartial(ctx context.Context, p []byte, pos int64) (int, error) {
	bs := int64(d.blockSize)
	lba := pos / bs
	d.rmw.Lock()
	defer d.rmw.Unlock()
	block, err := d.readBlocks(ctx, uint64(lba), 1)
	if err != nil {
		return 0, err
	}
	m := copy(block[pos-lba*bs:], p)
	if err := d.writeBlocks(ctx, uint64(lba), block); err != nil {
		return 0, err
	}
	return m, nil
}

func (d *Device) readBlocks(ctx context.Context, lba uint64, blocks uint32) ([]byte, error) {
	resp, err := executeUA(ctx, d.s, scsi.Read16(lba, blocks, false, d.blockSize))
	if err != nil {
		return nil, err
	}
	if err := resp.Err(); err != nil {
		return nil, fmt.Errorf("fence/iscsi: READ(16) lba %d blocks %d on %s: %w", lba, blocks, d.s.target, err)
	}
	if want := int(blocks) * d.blockSize; len(resp.DataIn) != want {
		return nil, fmt.Errorf("%w: READ(16) lba %d returned %d bytes, want %d", ErrProtocol, lba, len(resp.DataIn), want)
	}
	return resp.DataIn, nil
}

func (d *Device) writeBlocks(ctx context.Context, lba uint64, data []byte) error {
	blocks := uint32(len(data) / d.blockSize)
	resp, err := executeUA(ctx, d.s, scsi.Write16(lba, blocks, false, data))
	if err != nil {
		return err
	}
	if err := resp.Err(); err != nil {
		return fmt.Errorf("fence/iscsi: WRITE(16) lba %d blocks %d on %s: %w", lba, blocks, d.s.target, err)
	}
	return nil
}

// executeUA runs cmd, resending it while the answer is UNIT ATTENTION.
func executeUA(ctx context.Context, s *Session, cmd scsi.Command) (scsi.Response, error) {
	for i := 0; ; i++ {
		resp, err := s.Execute(ctx, cmd)
		if err != nil || i == maxUARetries || !errors.Is(resp.Err(), scsi.ErrUnitAttention) {
			return resp, err
		}
	}
}
