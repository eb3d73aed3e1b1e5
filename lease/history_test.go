package lease

import (
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestEventsBoundedAndFiltered(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, cli, _ := newTestStore(t)
	s.maxEvents = 5
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	roles := []string{"web", "db"}
	for i := range 12 {
		ev := Event{Time: base.Add(time.Duration(i) * time.Second), Role: roles[i%2], Node: "a", Kind: EventTakeover, Token: int64(i)}
		if err := s.AppendEvent(ctx, ev); err != nil {
			t.Fatalf("AppendEvent %d: %v", i, err)
		}
	}
	if n := mustGet(ctx, t, cli, s.key(dirEvents), clientv3.WithPrefix(), clientv3.WithCountOnly()).Count; n != 5 {
		t.Fatalf("%d events kept, want 5", n)
	}
	tests := []struct {
		name   string
		role   string
		limit  int
		tokens []int64
	}{
		{name: "all", tokens: []int64{7, 8, 9, 10, 11}},
		{name: "newest two", limit: 2, tokens: []int64{10, 11}},
		{name: "one role", role: "web", tokens: []int64{8, 10}},
		{name: "one role limited", role: "db", limit: 1, tokens: []int64{11}},
		{name: "unknown role", role: "mail", tokens: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := s.Events(ctx, tc.role, tc.limit)
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			var tokens []int64
			for _, ev := range evs {
				tokens = append(tokens, ev.Token)
				if ev.Key == "" || !ev.Time.Equal(base.Add(time.Duration(ev.Token)*time.Second)) {
					t.Fatalf("event %+v: key or time not round-tripped", ev)
				}
			}
			if len(tokens) != len(tc.tokens) {
				t.Fatalf("tokens %v, want %v", tokens, tc.tokens)
			}
			for i := range tokens {
				if tokens[i] != tc.tokens[i] {
					t.Fatalf("tokens %v, want %v (oldest first)", tokens, tc.tokens)
				}
			}
		})
	}
}

func TestAppendEventSameInstantKeepsBoth(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, _, _ := newTestStore(t)
	now := time.Now()
	for _, kind := range []string{EventFenced, EventTakeover} {
		if err := s.AppendEvent(ctx, Event{Time: now, Node: "a", Kind: kind, Steps: []Step{{Name: "fence", Duration: time.Millisecond}}}); err != nil {
			t.Fatalf("AppendEvent: %v", err)
		}
	}
	evs, err := s.Events(ctx, "", 0)
	if err != nil || len(evs) != 2 || evs[0].Kind != EventFenced || evs[1].Steps[0].Duration != time.Millisecond {
		t.Fatalf("Events = %+v, %v; want both, in order", evs, err)
	}
	if err := s.AppendEvent(ctx, Event{Node: "a/b", Kind: EventJoin}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("AppendEvent with a bad node = %v, want ErrInvalidName", err)
	}
}

func TestCommandsSendListDone(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	s, _, _ := newTestStore(t)
	sent := []Command{
		{Kind: CommandDrain},
		{Kind: CommandMove, Role: "web", To: "b"},
		{ID: "op-1", Kind: CommandQualify},
	}
	for _, c := range sent {
		if err := s.SendCommand(ctx, "a", c); err != nil {
			t.Fatalf("SendCommand %+v: %v", c, err)
		}
	}
	cmds, err := s.Commands(ctx, "a")
	if err != nil || len(cmds) != 3 {
		t.Fatalf("Commands = %+v, %v", cmds, err)
	}
	for i, c := range cmds {
		if c.Kind != sent[i].Kind || c.ID == "" || c.Time.IsZero() {
			t.Fatalf("command %d = %+v, want kind %s with id and time, in sending order", i, c, sent[i].Kind)
		}
	}
	if cmds[0].ID == cmds[1].ID || cmds[2].ID != "op-1" {
		t.Fatalf("ids %q %q %q", cmds[0].ID, cmds[1].ID, cmds[2].ID)
	}
	v, err := s.View(ctx)
	if err != nil || len(v.Commands["a"]) != 3 || v.Commands["a"][1] != cmds[1] {
		t.Fatalf("View commands %+v, %v", v.Commands["a"], err)
	}
	if err := s.DoneCommand(ctx, "a", cmds[0].ID); err != nil {
		t.Fatalf("DoneCommand: %v", err)
	}
	if err := s.DoneCommand(ctx, "a", cmds[0].ID); err != nil {
		t.Fatalf("DoneCommand twice: %v", err)
	}
	if cmds, err := s.Commands(ctx, "a"); err != nil || len(cmds) != 2 || cmds[0].Kind != CommandMove {
		t.Fatalf("Commands after done = %+v, %v", cmds, err)
	}
	tests := []struct {
		name string
		node string
		cmd  Command
		want error
	}{
		{name: "no kind", node: "a", cmd: Command{}, want: ErrInvalidArgument},
		{name: "id with slash", node: "a", cmd: Command{ID: "x/y", Kind: CommandDrain}, want: ErrInvalidArgument},
		{name: "bad node", node: "../a", cmd: Command{Kind: CommandDrain}, want: ErrInvalidName},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := s.SendCommand(ctx, tc.node, tc.cmd); !errors.Is(err, tc.want) {
				t.Fatalf("SendCommand = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFormatSteps(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []Step
		want  string
	}{
		{"none", nil, "-"},
		{"sub-millisecond rounds to µs", []Step{{Name: "fence", Duration: 81234 * time.Nanosecond}}, "fence=81µs"},
		{"milliseconds", []Step{{Name: "detect", Duration: 3 * time.Millisecond}, {Name: "exec", Duration: 104400 * time.Microsecond}}, "detect=3ms exec=104ms"},
		{"seconds keep two decimals", []Step{{Name: "storage", Duration: 1234 * time.Millisecond}}, "storage=1.23s"},
		{"failed step marked", []Step{{Name: "fence", Duration: 3 * time.Second, Err: "conflict"}}, "fence=3s!"},
		{"zero", []Step{{Name: "mark"}}, "mark=0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatSteps(tc.steps); got != tc.want {
				t.Fatalf("FormatSteps = %q, want %q", got, tc.want)
			}
		})
	}
}
