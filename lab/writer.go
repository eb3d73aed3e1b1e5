package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// writeTimeout bounds one client write: an fsync through iSCSI takes milliseconds, and a
// write that hangs on a dying holder must not stall the client's next one.
const writeTimeout = 500 * time.Millisecond

// Writer is a client writing to one role's demo service (POST /write?seq=N) at a fixed
// rate with increasing sequence numbers, as a user of the service would; it records
// which writes were acknowledged.
type Writer struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex // guards res
	res    WriterResult
}

// WriterResult is what a Writer saw.
type WriterResult struct {
	Acked  []int64 // sequence numbers the service acknowledged (after its fsync)
	Failed int     // writes refused, timed out or unanswered (never acknowledged)
}

// StartWriter starts writing to role every interval until Stop or ctx ends.
func (f *Farm) StartWriter(ctx context.Context, role string, every time.Duration) (*Writer, error) {
	r, err := f.Role(role)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Writer{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for seq := int64(1); ; seq++ {
			err := f.write(ctx, r.Addr(), seq)
			if ctx.Err() != nil {
				return // cut short by Stop: neither acknowledged nor refused
			}
			w.mu.Lock()
			if err == nil {
				w.res.Acked = append(w.res.Acked, seq)
			} else {
				w.res.Failed++
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w, nil
}

func (f *Farm) write(ctx context.Context, addr string, seq int64) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://%s/write?seq=%d", addr, seq), nil)
	if err != nil {
		return err
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("lab: write %d: HTTP %d", seq, resp.StatusCode)
	}
	return nil
}

// Result returns what the writer saw so far.
func (w *Writer) Result() WriterResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return WriterResult{Acked: slices.Clone(w.res.Acked), Failed: w.res.Failed}
}

// Stop stops writing, waits for the writer's goroutine and returns what it saw.
func (w *Writer) Stop() WriterResult {
	w.cancel()
	<-w.done
	return w.Result()
}

// WriteLog is role's write log as its current holder reads it from the role's storage.
type WriteLog struct {
	Node  string  `json:"node"`
	Token int64   `json:"token"`
	Count int     `json:"count"`
	Seqs  []int64 `json:"seqs"`
}

// ReadWrites asks role's service for its write log (GET /writes).
func (f *Farm) ReadWrites(ctx context.Context, role string) (WriteLog, error) {
	var wl WriteLog
	r, err := f.Role(role)
	if err != nil {
		return wl, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Addr()+"/writes", nil)
	if err != nil {
		return wl, err
	}
	resp, err := f.http.Do(req)
	if err != nil {
		return wl, fmt.Errorf("lab: read writes of %s: %w", role, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return wl, fmt.Errorf("lab: read writes of %s: HTTP %d", role, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&wl); err != nil {
		return wl, fmt.Errorf("lab: read writes of %s: %w", role, err)
	}
	return wl, nil
}

// Lost returns the acknowledged writes missing from the log.
func Lost(acked, logged []int64) []int64 {
	have := make(map[int64]bool, len(logged))
	for _, s := range logged {
		have[s] = true
	}
	var lost []int64
	for _, s := range acked {
		if !have[s] {
			lost = append(lost, s)
		}
	}
	return lost
}
