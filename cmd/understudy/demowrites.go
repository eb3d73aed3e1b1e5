package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// writeLog is demo-service's durable write log: one line "seq node token" per
// acknowledged write, appended and fsynced before the answer. It lives on the role's
// storage, so the next holder reads every write the previous ones acknowledged.
type writeLog struct {
	mu   sync.Mutex // guards f, seqs
	f    *os.File
	seqs []int64
}

// openWriteLog opens (creating) DIR/writes.log and reads the writes already in it. A
// torn last line (a holder killed mid-write, never acknowledged) is skipped.
func openWriteLog(dir string) (*writeLog, error) {
	path := filepath.Join(dir, "writes.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("demo-service: open write log: %w", err)
	}
	wl := &writeLog{f: f}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			continue
		}
		if seq, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			wl.seqs = append(wl.seqs, seq)
		}
	}
	if err := sc.Err(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("demo-service: read write log %s: %w", path, err)
	}
	return wl, nil
}

// Close closes the log file.
func (wl *writeLog) Close() error { return wl.f.Close() }

// append writes one record and fsyncs it.
func (wl *writeLog) append(seq int64, who demoReply) (int, error) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	line := fmt.Sprintf("%d %s %d\n", seq, who.Node, who.Token)
	if _, err := wl.f.WriteString(line); err != nil {
		return 0, fmt.Errorf("demo-service: append write %d: %w", seq, err)
	}
	if err := wl.f.Sync(); err != nil {
		return 0, fmt.Errorf("demo-service: fsync write %d: %w", seq, err)
	}
	wl.seqs = append(wl.seqs, seq)
	return len(wl.seqs), nil
}

// writesReply is the answer of POST /write and GET /writes.
type writesReply struct {
	Node  string  `json:"node"`
	Token int64   `json:"token"`
	Seq   int64   `json:"seq,omitempty"`
	Count int     `json:"count"`
	Seqs  []int64 `json:"seqs,omitempty"`
}

func (wl *writeLog) routes(mux *http.ServeMux, who demoReply) {
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseInt(r.URL.Query().Get("seq"), 10, 64)
		if err != nil || seq < 0 {
			http.Error(w, "seq: want a non-negative integer query parameter", http.StatusBadRequest)
			return
		}
		n, err := wl.append(seq, who)
		if err != nil {
			// Storage gone (fenced, unmounted): refuse rather than acknowledge.
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		replyJSON(w, writesReply{Node: who.Node, Token: who.Token, Seq: seq, Count: n})
	})
	mux.HandleFunc("GET /writes", func(w http.ResponseWriter, _ *http.Request) {
		wl.mu.Lock()
		rep := writesReply{Node: who.Node, Token: who.Token, Count: len(wl.seqs), Seqs: append([]int64(nil), wl.seqs...)}
		wl.mu.Unlock()
		replyJSON(w, rep)
	})
}

func replyJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
