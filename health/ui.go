package health

import (
	"context"
	_ "embed" // the page's files
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"time"

	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
	"github.com/understudy-ha/understudy/takeover"
)

// The web status page: GET /ui is a read-only page (plain HTML, CSS and JavaScript, no
// build step, embedded in the binary) that polls GET /ui/state.json every second and
// renders nodes, roles and the recent timeline. It has no forms and changes nothing.

// EventSource is optionally implemented by a Source that can read the cluster's event
// history; the page's timeline stays empty (with a note) for a Source that does not.
// Events returns the newest limit events, oldest first, and must honour ctx.
type EventSource interface {
	Events(ctx context.Context, limit int) ([]lease.Event, error)
}

// uiEvents is how many of the newest events the page shows: enough for a few failovers
// with their releases and joins, small enough to poll every second.
const uiEvents = 30

// errNoEvents explains an empty timeline when the Source has no event history.
var errNoEvents = errors.New("health: this agent does not serve the event history")

// The page's files, embedded at build time (a missing file fails the build).
var (
	//go:embed ui/index.html
	uiIndex []byte
	//go:embed ui/app.js
	uiApp []byte
	//go:embed ui/style.css
	uiStyle []byte
)

// uiAsset is one embedded file and the content type it is served with.
type uiAsset struct {
	body        []byte
	contentType string
}

// uiAssets maps routes to files. Explicit routes (rather than a file server) keep the
// content types fixed and leave nothing else under /ui to be found.
var uiAssets = map[string]uiAsset{
	"GET /ui":           {uiIndex, "text/html; charset=utf-8"},
	"GET /ui/app.js":    {uiApp, "text/javascript; charset=utf-8"},
	"GET /ui/style.css": {uiStyle, "text/css; charset=utf-8"},
}

// uiCSP allows the page only its own script, style and JSON: no inline script, no other
// origin, no forms, no framing. It is what enforces "nothing but our files runs here".
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// uiState is /ui/state.json. Cluster is omitted and Error set when the cluster status
// could not be read; EventsError likewise for the history. Time is the agent's wall
// clock, for display only (the page shows how old "since" times are against it).
type uiState struct {
	Time        time.Time               `json:"time"`
	Local       takeover.LocalStatus    `json:"local"`
	Cluster     *takeover.ClusterStatus `json:"cluster,omitempty"`
	Error       string                  `json:"error,omitempty"`
	Events      []lease.Event           `json:"events"`
	EventsError string                  `json:"events_error,omitempty"`
}

// handleUI adds the page's routes to mux.
func (s *Server) handleUI(mux *http.ServeMux) {
	for pattern, a := range uiAssets {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, _ *http.Request) {
			uiHeader(w, a.contentType)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(a.body)
		})
	}
	// The page's relative links resolve against /ui, not /ui/.
	mux.HandleFunc("GET /ui/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /ui/state.json", s.uiState)
}

func (s *Server) uiState(w http.ResponseWriter, r *http.Request) {
	body := uiState{Time: time.Now(), Local: s.src.Local(), Events: []lease.Event{}}
	// One budget for both etcd reads: the page polls every second.
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	var code int
	body.Cluster, body.Error, code = s.readCluster(ctx)
	if evs, err := s.events(ctx); err != nil {
		body.EventsError = "events unavailable: " + err.Error()
	} else {
		body.Events = evs
	}
	b, err := json.Marshal(body)
	if err != nil {
		text(w, http.StatusInternalServerError, "encode ui state: %v", err)
		return
	}
	uiHeader(w, "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// events reads the newest events if the Source can, with URL credentials scrubbed from
// their free-text details.
func (s *Server) events(ctx context.Context) ([]lease.Event, error) {
	es, ok := s.src.(EventSource)
	if !ok {
		return nil, errNoEvents
	}
	evs, err := es.Events(ctx, uiEvents)
	if err != nil {
		s.log.Debug("events for the status page", zap.Error(err))
		return nil, err
	}
	// A copy: the scrubbing must not write into the Source's slices.
	out := make([]lease.Event, len(evs))
	for i, ev := range evs {
		ev.Detail = scrubURLSecrets(ev.Detail)
		ev.Steps = append([]lease.Step(nil), ev.Steps...)
		for j := range ev.Steps {
			ev.Steps[j].Err = scrubURLSecrets(ev.Steps[j].Err)
		}
		out[i] = ev
	}
	return out, nil
}

// urlSecret matches the password of a URL's userinfo ("scheme://user:secret@").
var urlSecret = regexp.MustCompile(`(://[^/@:\s]*:)[^/@\s]*@`)

// scrubURLSecrets replaces URL passwords in s with xxxxx. Event details are error texts
// and the packages producing them already redact (iscsi URLs print "xxxxx"); this is a
// second line, because the page may be reachable by more people than etcd is.
func scrubURLSecrets(s string) string {
	return urlSecret.ReplaceAllString(s, "${1}xxxxx@")
}

// uiHeader is header plus what a browser needs to keep the page to itself.
func uiHeader(w http.ResponseWriter, contentType string) {
	header(w, contentType)
	h := w.Header()
	h.Set("Content-Security-Policy", uiCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}
