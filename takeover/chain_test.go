package takeover

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResource records its calls in a shared journal.
type fakeResource struct {
	name     string
	startErr error
	stopErr  error
	delay    time.Duration // each Start sleeps this long, to see it in the step
	journal  *journal
}

type journal struct {
	mu      sync.Mutex
	calls   []string
	stopCtx []error // ctx.Err() seen by each Stop
}

func (j *journal) add(call string, ctxErr error, stop bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.calls = append(j.calls, call)
	if stop {
		j.stopCtx = append(j.stopCtx, ctxErr)
	}
}

func (f *fakeResource) Name() string { return f.name }

func (f *fakeResource) Start(ctx context.Context, rc RoleContext) error {
	time.Sleep(f.delay)
	f.journal.add("start "+f.name, nil, false)
	return f.startErr
}

func (f *fakeResource) Stop(ctx context.Context) error {
	f.journal.add("stop "+f.name, ctx.Err(), true)
	return f.stopErr
}

func TestChainStart(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name      string
		startErr  map[string]error
		wantCalls []string
		wantSteps []string // names; "!" suffix: the step has Err
		wantErr   error
	}{
		{
			name:      "all start in order",
			wantCalls: []string{"start fence", "start storage", "start exec"},
			wantSteps: []string{"fence", "storage", "exec"},
		},
		{
			name:      "failure rolls back in reverse",
			startErr:  map[string]error{"exec": errBoom},
			wantCalls: []string{"start fence", "start storage", "start exec", "stop storage", "stop fence"},
			wantSteps: []string{"fence", "storage", "exec!", "rollback/storage", "rollback/fence"},
			wantErr:   errBoom,
		},
		{
			name:      "first fails, nothing to roll back",
			startErr:  map[string]error{"fence": errBoom},
			wantCalls: []string{"start fence"},
			wantSteps: []string{"fence!"},
			wantErr:   errBoom,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			j := &journal{}
			var res []Resource
			for _, n := range []string{"fence", "storage", "exec"} {
				res = append(res, &fakeResource{name: n, startErr: tt.startErr[n], delay: 5 * time.Millisecond, journal: j})
			}
			steps, err := NewChain(res...).Start(ctx, RoleContext{Role: "web"})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Start error = %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(j.calls, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", j.calls, tt.wantCalls)
			}
			var names []string
			for _, s := range steps {
				n := s.Name
				if s.Err != "" {
					n += "!"
				}
				names = append(names, n)
				if !strings.HasPrefix(s.Name, rollbackPrefix) && s.Duration < 5*time.Millisecond {
					t.Errorf("step %s duration %v, want >= 5ms (the fake's delay)", s.Name, s.Duration)
				}
			}
			if !reflect.DeepEqual(names, tt.wantSteps) {
				t.Errorf("steps = %q, want %q", names, tt.wantSteps)
			}
		})
	}
}

// A cancelled Start (the usual cause of a failure) still rolls back gracefully:
// the resources are stopped with a live context.
func TestChainRollbackOutlivesCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	j := &journal{}
	a := &fakeResource{name: "storage", journal: j}
	b := &cancellingResource{fakeResource{name: "exec", journal: j}, cancel}
	steps, err := NewChain(a, b).Start(ctx, RoleContext{Role: "web"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start error = %v, want context.Canceled", err)
	}
	if len(steps) != 3 || steps[2].Name != "rollback/storage" {
		t.Fatalf("steps = %+v, want exec failure then rollback/storage", steps)
	}
	if len(j.stopCtx) != 1 || j.stopCtx[0] != nil {
		t.Errorf("rollback Stop saw ctx errors %v, want one live context", j.stopCtx)
	}
}

// cancellingResource cancels the chain's context during its Start and fails with it.
type cancellingResource struct {
	fakeResource
	cancel context.CancelFunc
}

func (c *cancellingResource) Start(ctx context.Context, rc RoleContext) error {
	c.cancel()
	return ctx.Err()
}

func TestChainStopReverseContinuesPastErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errVIP, errStorage := errors.New("vip stuck"), errors.New("busy")
	j := &journal{}
	c := NewChain(
		&fakeResource{name: "storage", stopErr: errStorage, journal: j},
		&fakeResource{name: "exec", journal: j},
		&fakeResource{name: "vip", stopErr: errVIP, journal: j},
	)
	steps, err := c.Stop(ctx)
	if !errors.Is(err, errVIP) || !errors.Is(err, errStorage) {
		t.Fatalf("Stop error = %v, want both %v and %v", err, errVIP, errStorage)
	}
	want := []string{"stop vip", "stop exec", "stop storage"}
	if !reflect.DeepEqual(j.calls, want) {
		t.Errorf("calls = %q, want %q", j.calls, want)
	}
	if len(steps) != 3 || steps[0].Err == "" || steps[1].Err != "" || steps[2].Err == "" {
		t.Errorf("steps = %+v, want vip and storage with Err, exec without", steps)
	}
}

// TestFinishStops: a role whose stop failed (a demotion's deadline cut it short) is
// stopped again, each time on a fresh bound, until its resources stop cleanly; a
// resource that keeps failing stays for the next attempt.
func TestFinishStops(t *testing.T) {
	a, err := NewAgent(Config{Node: "a", Cluster: "test", Etcd: EtcdConfig{Endpoints: []string{"http://127.0.0.1:1"}},
		TTL: 2 * time.Second, StateDir: t.TempDir(), LogFormat: "console", LogLevel: "info"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	storage := &fakeResource{name: "storage", stopErr: errors.New("loop device still attached"), journal: j}
	a.unfinished = []*Chain{NewChain(storage)}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // as after a demotion: the caller's context is done

	a.finishStops(ctx)
	if len(a.unfinished) != 1 {
		t.Fatalf("a failing stop was dropped: %d unfinished", len(a.unfinished))
	}
	storage.stopErr = nil
	a.finishStops(ctx)
	if len(a.unfinished) != 0 {
		t.Fatalf("%d unfinished after a clean stop", len(a.unfinished))
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if len(j.stopCtx) != 2 || j.stopCtx[0] != nil || j.stopCtx[1] != nil {
		t.Fatalf("stops saw contexts %v: want two live ones (their own bound, not the caller's done ctx)", j.stopCtx)
	}
}
