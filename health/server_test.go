package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/understudy-ha/understudy/takeover"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeSource is a canned Source; the interface is ours, so a fake is the honest test double.
type fakeSource struct {
	local      takeover.LocalStatus
	cluster    takeover.ClusterStatus
	clusterErr error
}

func (f fakeSource) Local() takeover.LocalStatus { return f.local }

func (f fakeSource) Cluster(ctx context.Context) (takeover.ClusterStatus, error) {
	if err := ctx.Err(); err != nil {
		return takeover.ClusterStatus{}, err
	}
	return f.cluster, f.clusterErr
}

func healthyLocal() takeover.LocalStatus {
	return takeover.LocalStatus{
		Node: "a", NodeID: 1, State: "active", Roles: map[string]int64{"web": 17},
		EtcdOK: true, LoopAge: 200 * time.Millisecond, KeepaliveAge: time.Second,
		TTL: 5 * time.Second, Ready: true,
	}
}

func cluster() takeover.ClusterStatus {
	return takeover.ClusterStatus{
		Cluster: "default", Rev: 30,
		Nodes: []takeover.NodeStatus{{Name: "a", ID: 1, State: "active", Roles: []string{"web"}}},
		Roles: []takeover.RoleStatus{
			{Name: "web", Holder: "a", Token: 17},
			{Name: "db", Holder: "b", Token: 19},
			{Name: "mail"},
		},
		Unheld: []string{"mail"},
	}
}

func TestRoutes(t *testing.T) {
	with := func(mut func(*takeover.LocalStatus)) takeover.LocalStatus {
		l := healthyLocal()
		mut(&l)
		return l
	}
	tests := []struct {
		name       string
		method     string
		path       string
		local      takeover.LocalStatus
		clusterErr error
		wantCode   int
		wantBody   string // substring
	}{
		{"healthz ok", "GET", "/healthz", healthyLocal(), nil, 200, "ok\n"},
		{"healthz head", "HEAD", "/healthz", healthyLocal(), nil, 200, ""},
		{"healthz loop stalled", "GET", "/healthz",
			with(func(l *takeover.LocalStatus) { l.LoopAge = 15 * time.Second }), nil,
			503, "agent loop last ran 15s ago (limit 15s)"},
		{"healthz no ttl uses 5s", "GET", "/healthz",
			with(func(l *takeover.LocalStatus) { l.TTL = 0; l.LoopAge = 6 * time.Second }), nil,
			503, "limit 5s"},
		{"healthz no ttl young loop", "GET", "/healthz",
			with(func(l *takeover.LocalStatus) { l.TTL = 0; l.LoopAge = time.Second }), nil,
			200, "ok"},
		{"healthz etcd down", "GET", "/healthz",
			with(func(l *takeover.LocalStatus) { l.EtcdOK = false }), nil, 503, "etcd unreachable"},
		{"healthz post", "POST", "/healthz", healthyLocal(), nil, 405, ""},
		{"readyz ok", "GET", "/readyz", healthyLocal(), nil, 200, "ready\n"},
		{"readyz probation", "GET", "/readyz",
			with(func(l *takeover.LocalStatus) { l.Ready = false; l.State = "probation" }), nil,
			503, "not ready: state probation\n"},
		{"readyz delete", "DELETE", "/readyz", healthyLocal(), nil, 405, ""},
		{"role holder", "GET", "/roles/web", healthyLocal(), nil, 200, "holder node=a token=17\n"},
		{"role holder etcd down", "GET", "/roles/web", healthyLocal(), errors.New("boom"),
			200, "holder node=a token=17\n"},
		{"role held elsewhere", "GET", "/roles/db", healthyLocal(), nil, 503, "not holder: held by b\n"},
		{"role unheld", "GET", "/roles/mail", healthyLocal(), nil, 503, "not holder: unheld\n"},
		{"role unknown", "GET", "/roles/nope", healthyLocal(), nil, 404, "unknown role \"nope\"\n"},
		{"role cluster error", "GET", "/roles/db", healthyLocal(), errors.New("boom"),
			503, "cluster status unavailable"},
		{"role empty", "GET", "/roles/", healthyLocal(), nil, 404, ""},
		{"role nested", "GET", "/roles/web/x", healthyLocal(), nil, 404, ""},
		{"role put", "PUT", "/roles/web", healthyLocal(), nil, 405, ""},
		{"status ok", "GET", "/status", healthyLocal(), nil, 200, `"revision": 30`},
		{"status cluster error", "GET", "/status", healthyLocal(), errors.New("etcd gone"),
			503, `"error": "cluster status unavailable: etcd gone"`},
		{"metrics", "GET", "/metrics", healthyLocal(), nil, 200, "understudy_test_total 3"},
		{"metrics post", "POST", "/metrics", healthyLocal(), nil, 405, ""},
		{"unknown path", "GET", "/nope", healthyLocal(), nil, 404, ""},
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "understudy_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := fakeSource{local: tc.local, cluster: cluster(), clusterErr: tc.clusterErr}
			h := New(src, reg, nil).Handler()
			req := httptest.NewRequest(tc.method, tc.path, nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.wantCode {
				t.Errorf("code = %d, want %d (body %q)", rec.Code, tc.wantCode, body)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Errorf("body %q lacks %q", body, tc.wantBody)
			}
			if body != "" && !strings.HasSuffix(body, "\n") {
				t.Errorf("body %q does not end with a newline", body)
			}
			if tc.wantCode == 405 && rec.Header().Get("Allow") == "" {
				t.Errorf("405 without Allow header")
			}
		})
	}
}

func TestStatusJSON(t *testing.T) {
	src := fakeSource{local: healthyLocal(), cluster: cluster()}
	rec := httptest.NewRecorder()
	New(src, nil, nil).Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got struct {
		Local   takeover.LocalStatus   `json:"local"`
		Cluster takeover.ClusterStatus `json:"cluster"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode %s: %v", rec.Body, err)
	}
	if got.Local.Node != "a" || got.Local.Roles["web"] != 17 {
		t.Errorf("local = %+v", got.Local)
	}
	if got.Cluster.Rev != 30 || len(got.Cluster.Roles) != 3 || got.Cluster.Unheld[0] != "mail" {
		t.Errorf("cluster = %+v", got.Cluster)
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- New(fakeSource{local: healthyLocal()}, nil, nil).ServeListener(srvCtx, ln) }()

	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+ln.Addr().String()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Errorf("got %d %q", resp.StatusCode, b)
	}

	// HEAD over a real connection: status and headers, no body.
	head, err := http.NewRequestWithContext(ctx, "HEAD", "http://"+ln.Addr().String()+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = client.Do(head)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Errorf("HEAD /readyz: %d %q", resp.StatusCode, b)
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("Serve did not return after cancel")
	}
}

func TestServeListenError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	// The port is taken, so Serve must fail at once instead of blocking until ctx ends.
	err = New(fakeSource{}, nil, nil).Serve(ctx, ln.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "health: listen on") {
		t.Errorf("Serve on a busy port = %v", err)
	}
}
