package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// fakeEventSource is fakeSource with an event history.
type fakeEventSource struct {
	fakeSource
	events    []lease.Event
	eventsErr error
	limit     *int // the limit asked for, if non-nil
}

func (f fakeEventSource) Events(ctx context.Context, limit int) ([]lease.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if f.limit != nil {
		*f.limit = limit
	}
	return f.events, f.eventsErr
}

func uiEventsFixture() []lease.Event {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []lease.Event{
		{Time: t0, Node: "d", Kind: "join", Detail: "lease 1f ttl 2s"},
		{Time: t0.Add(time.Minute), Role: "web", Node: "d", Kind: "takeover", Token: 42, From: "a",
			Steps: []lease.Step{{Name: "fence", Duration: 4 * time.Millisecond}, {Name: "exec", Duration: 90 * time.Millisecond}},
			Total: 120 * time.Millisecond},
		{Time: t0.Add(2 * time.Minute), Role: "db", Node: "c", Kind: "takeover-failed",
			Steps:  []lease.Step{{Name: "storage", Duration: time.Second, Err: "login iscsi://u:hunter2@192.0.2.1/iqn.x/0: refused"}},
			Detail: "storage: dial iscsi://admin:s3cret@192.0.2.1:3260/iqn.x/0"},
	}
}

func serve(h http.Handler, method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

func TestUIRoutes(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		wantCode int
		wantType string // Content-Type prefix, "" = not checked
		wantBody string // substring
	}{
		{"page", "GET", "/ui", 200, "text/html; charset=utf-8", `<table id="roles">`},
		{"page head", "HEAD", "/ui", 200, "text/html", ""},
		{"script", "GET", "/ui/app.js", 200, "text/javascript", "ui/state.json"},
		{"style", "GET", "/ui/style.css", 200, "text/css", "data-bar"},
		{"state", "GET", "/ui/state.json", 200, "application/json", `"cluster":`},
		{"trailing slash redirects", "GET", "/ui/", 301, "", ""},
		{"page post", "POST", "/ui", 405, "", ""},
		{"state post", "POST", "/ui/state.json", 405, "", ""},
		{"state delete", "DELETE", "/ui/state.json", 405, "", ""},
		{"no listing", "GET", "/ui/index.html", 404, "", ""},
		{"unknown file", "GET", "/ui/secret", 404, "", ""},
	}
	h := New(fakeEventSource{fakeSource: fakeSource{local: healthyLocal(), cluster: cluster()}}, nil, nil).Handler()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(h, tc.method, tc.path)
			body := rec.Body.String()
			if rec.Code != tc.wantCode {
				t.Fatalf("%s %s = %d, want %d (body %q)", tc.method, tc.path, rec.Code, tc.wantCode, body)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.wantType) {
				t.Errorf("Content-Type = %q, want %q", ct, tc.wantType)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Errorf("body lacks %q", tc.wantBody)
			}
			if tc.wantCode == 200 {
				for _, k := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Cache-Control"} {
					if rec.Header().Get(k) == "" {
						t.Errorf("no %s header", k)
					}
				}
			}
			if tc.wantCode == 301 && rec.Header().Get("Location") != "/ui" {
				t.Errorf("Location = %q, want /ui", rec.Header().Get("Location"))
			}
		})
	}
}

// TestUIPageLinks: every file the page refers to, resolved against /ui as a browser
// does, is served; the page has no inline script (the CSP would block it).
func TestUIPageLinks(t *testing.T) {
	h := New(fakeEventSource{fakeSource: fakeSource{local: healthyLocal(), cluster: cluster()}}, nil, nil).Handler()
	page := serve(h, "GET", "/ui").Body.String()
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(page, -1)
	refs = append(refs, []string{"", "ui/state.json"}) // fetched by app.js
	if len(refs) < 4 {
		t.Fatalf("page refers to %d files: %q", len(refs), refs)
	}
	base, _ := url.Parse("http://node:7480/ui")
	for _, m := range refs {
		ref, err := url.Parse(m[1])
		if err != nil {
			t.Fatalf("bad link %q: %v", m[1], err)
		}
		u := base.ResolveReference(ref)
		if rec := serve(h, "GET", u.Path); rec.Code != 200 {
			t.Errorf("link %q -> %s = %d", m[1], u.Path, rec.Code)
		}
	}
	if n := strings.Count(page, "<script"); n != strings.Count(page, "<script src=") {
		t.Errorf("page has an inline <script>: %d scripts, %d with src", n, strings.Count(page, "<script src="))
	}
}

// TestUIScriptEscapes guards the page's rule that agent data reaches the DOM only as
// text: no HTML-parsing sink in app.js, and every element it looks up exists.
func TestUIScriptEscapes(t *testing.T) {
	// Comment lines may name the sinks (to forbid them); code may not.
	js := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(string(uiApp), "")
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "setAttribute('on"} {
		if strings.Contains(js, sink) {
			t.Errorf("app.js uses %s", sink)
		}
	}
	for _, m := range regexp.MustCompile(`\$\('([a-z-]+)'\)`).FindAllStringSubmatch(js, -1) {
		if !strings.Contains(string(uiIndex), `id="`+m[1]+`"`) {
			t.Errorf("app.js looks up #%s, which index.html lacks", m[1])
		}
	}
}

type uiStateWire struct {
	Local       takeover.LocalStatus    `json:"local"`
	Cluster     *takeover.ClusterStatus `json:"cluster"`
	Error       string                  `json:"error"`
	Events      []lease.Event           `json:"events"`
	EventsError string                  `json:"events_error"`
	Time        time.Time               `json:"time"`
}

func TestUIState(t *testing.T) {
	local, cs := healthyLocal(), cluster()
	cs.Nodes[0].LeaseLeft = 1500 * time.Millisecond
	tests := []struct {
		name          string
		src           Source
		wantCode      int
		wantCluster   bool
		wantEvents    int
		wantEventsErr string
	}{
		{"cluster and events", fakeEventSource{fakeSource: fakeSource{local: local, cluster: cs}, events: uiEventsFixture()},
			200, true, 3, ""},
		{"no event history", fakeSource{local: local, cluster: cs}, 200, true, 0, "does not serve the event history"},
		{"events fail", fakeEventSource{fakeSource: fakeSource{local: local, cluster: cs}, eventsErr: errors.New("etcd slow")},
			200, true, 0, "events unavailable: etcd slow"},
		{"cluster fails", fakeEventSource{fakeSource: fakeSource{local: local, clusterErr: errors.New("etcd gone")}, events: uiEventsFixture()},
			503, false, 3, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(New(tc.src, nil, nil).Handler(), "GET", "/ui/state.json")
			if rec.Code != tc.wantCode {
				t.Fatalf("code = %d, want %d (%s)", rec.Code, tc.wantCode, rec.Body)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, rec.Body)
			}
			if string(raw["events"]) == "null" {
				t.Errorf("events is null, want a list")
			}
			var got uiStateWire
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Local.Node != "a" || got.Time.IsZero() {
				t.Errorf("local %+v time %v", got.Local, got.Time)
			}
			if (got.Cluster != nil) != tc.wantCluster {
				t.Fatalf("cluster = %+v, want present=%v (error %q)", got.Cluster, tc.wantCluster, got.Error)
			}
			if tc.wantCluster {
				checkUICluster(t, got.Cluster)
			} else if !strings.Contains(got.Error, "etcd gone") {
				t.Errorf("error = %q", got.Error)
			}
			if len(got.Events) != tc.wantEvents || !strings.Contains(got.EventsError, tc.wantEventsErr) ||
				(tc.wantEventsErr == "") != (got.EventsError == "") {
				t.Errorf("events %d (error %q), want %d (error %q)", len(got.Events), got.EventsError, tc.wantEvents, tc.wantEventsErr)
			}
			if tc.wantEvents > 0 {
				checkUIEvents(t, got.Events)
			}
		})
	}
}

func checkUICluster(t *testing.T, cs *takeover.ClusterStatus) {
	t.Helper()
	if len(cs.Nodes) != 1 || cs.Nodes[0].Name != "a" || cs.Nodes[0].LeaseLeft != 1500*time.Millisecond {
		t.Errorf("nodes = %+v", cs.Nodes)
	}
	if len(cs.Roles) != 3 || cs.Roles[0].Name != "web" || cs.Roles[0].Holder != "a" || cs.Roles[0].Token != 17 {
		t.Errorf("roles = %+v", cs.Roles)
	}
}

func checkUIEvents(t *testing.T, evs []lease.Event) {
	t.Helper()
	tk := evs[1]
	if tk.Kind != "takeover" || tk.Role != "web" || tk.Node != "d" || tk.From != "a" || tk.Token != 42 ||
		len(tk.Steps) != 2 || tk.Steps[0].Name != "fence" || tk.Steps[0].Duration != 4*time.Millisecond ||
		tk.Total != 120*time.Millisecond {
		t.Errorf("takeover event = %+v", tk)
	}
	failed := evs[2]
	for _, s := range []string{failed.Detail, failed.Steps[0].Err} {
		if strings.Contains(s, "s3cret") || strings.Contains(s, "hunter2") || !strings.Contains(s, ":xxxxx@") {
			t.Errorf("secret not scrubbed: %q", s)
		}
	}
}

func TestUIStateAsksForRecentEvents(t *testing.T) {
	var limit int
	src := fakeEventSource{fakeSource: fakeSource{local: healthyLocal(), cluster: cluster()}, limit: &limit}
	serve(New(src, nil, nil).Handler(), "GET", "/ui/state.json")
	if limit != uiEvents {
		t.Errorf("Events asked with limit %d, want %d", limit, uiEvents)
	}
}

func TestScrubURLSecrets(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"iscsi", "dial iscsi://user:pw@10.0.0.1/iqn/0: x", "dial iscsi://user:xxxxx@10.0.0.1/iqn/0: x"},
		{"already redacted", "iscsi://user:xxxxx@h/iqn/0", "iscsi://user:xxxxx@h/iqn/0"},
		{"empty user", "http://:pw@h/", "http://:xxxxx@h/"},
		{"two urls", "a://u:p@h b://v:q@i", "a://u:xxxxx@h b://v:xxxxx@i"},
		{"user only", "iscsi://user@h/iqn/0", "iscsi://user@h/iqn/0"},
		{"host port", "http://h:2379/v3", "http://h:2379/v3"},
		{"no url", "health: exit status 1", "health: exit status 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := scrubURLSecrets(tc.in); got != tc.want {
				t.Errorf("scrubURLSecrets(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
