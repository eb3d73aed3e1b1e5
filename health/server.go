package health

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/takeover"
)

// Source is what the server reports on; *takeover.Agent implements it.
// Local must be cheap and never block (it serves load balancer checks at high rate);
// Cluster may read etcd and must honour ctx.
type Source interface {
	Local() takeover.LocalStatus
	Cluster(ctx context.Context) (takeover.ClusterStatus, error)
}

const (
	// defaultLoopLimit is the allowed loop age when the agent reports no TTL yet.
	defaultLoopLimit = 5 * time.Second
	// clusterTimeout bounds a request's etcd read: a load balancer check must get an
	// answer (503) before its own check timeout gives up on us.
	clusterTimeout = 2 * time.Second
	// shutdownTimeout bounds the graceful shutdown after the serve context ended.
	shutdownTimeout = 5 * time.Second
)

// Server is the HTTP endpoint. Create it with New; it is safe for concurrent use.
type Server struct {
	src      Source
	gatherer prometheus.Gatherer
	log      *zap.Logger
	handler  http.Handler
	tls      *tls.Config // nil: plain HTTP; set by WithTLS before serving
}

// New returns a server reporting on src. A nil gatherer serves prometheus.DefaultGatherer
// (Go runtime and process metrics); a nil log discards logs.
func New(src Source, gatherer prometheus.Gatherer, log *zap.Logger) *Server {
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{src: src, gatherer: gatherer, log: log}
	mux := http.NewServeMux()
	// "GET /x" patterns also match HEAD; ServeMux answers other methods with 405 + Allow.
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /roles/{role}", s.role)
	mux.HandleFunc("GET /status", s.status)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	s.handleUI(mux)
	s.handler = readOnly(mux)
	return s
}

// Handler returns the routes, for tests or to mount in another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve listens on addr and serves until ctx is done, then shuts down gracefully. It
// returns nil after a shutdown caused by ctx, and the listen or serve error otherwise.
func (s *Server) Serve(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health: listen on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on an existing listener, which it closes. Tests and callers that
// listen on port 0 use it to know the address.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          zap.NewStdLog(s.log.Named("http")),
	}
	s.log.Info("health endpoint listening", zap.String("addr", ln.Addr().String()),
		zap.Bool("tls", s.tls != nil), zap.Bool("client_certs", s.tls != nil && s.tls.ClientCAs != nil))
	errc := make(chan error, 1)
	if s.tls != nil {
		// ServeTLS takes the certificate from TLSConfig (empty file names) and adds h2.
		srv.TLSConfig = s.tls
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return fmt.Errorf("health: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// ctx is already done, so shutdown needs its own bounded context: long enough for
	// in-flight checks to finish, short enough not to hold up the agent's exit.
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		err = errors.Join(err, srv.Close())
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("health: shut down %s: %w", ln.Addr(), err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	l := s.src.Local()
	limit := 3 * l.TTL
	if l.TTL <= 0 {
		limit = defaultLoopLimit
	}
	switch {
	case l.LoopAge >= limit:
		text(w, http.StatusServiceUnavailable, "unhealthy: agent loop last ran %s ago (limit %s)",
			l.LoopAge.Round(time.Millisecond), limit)
	case !l.EtcdOK:
		text(w, http.StatusServiceUnavailable, "unhealthy: etcd unreachable (keepalive %s ago)",
			l.KeepaliveAge.Round(time.Millisecond))
	default:
		text(w, http.StatusOK, "ok")
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	l := s.src.Local()
	if !l.Ready {
		text(w, http.StatusServiceUnavailable, "not ready: state %s", orNone(l.State))
		return
	}
	text(w, http.StatusOK, "ready")
}

// role answers 200 only on the holder. The holder answers from local state alone, so a
// failing etcd does not take the live service out of the load balancer; every other node
// asks the cluster only to say who holds it (or that the role is unknown).
func (s *Server) role(w http.ResponseWriter, r *http.Request) {
	role := r.PathValue("role")
	l := s.src.Local()
	if token, ok := l.Roles[role]; ok {
		text(w, http.StatusOK, "holder node=%s token=%d", l.Node, token)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	cs, err := s.src.Cluster(ctx)
	if err != nil {
		s.log.Debug("cluster status for role check", zap.String("role", role), zap.Error(err))
		text(w, http.StatusServiceUnavailable, "not holder: cluster status unavailable")
		return
	}
	for _, rs := range cs.Roles {
		if rs.Name != role {
			continue
		}
		if rs.Holder == "" {
			text(w, http.StatusServiceUnavailable, "not holder: unheld")
		} else {
			text(w, http.StatusServiceUnavailable, "not holder: held by %s", rs.Holder)
		}
		return
	}
	text(w, http.StatusNotFound, "unknown role %q", role)
}

// statusBody is /status's JSON. Cluster is omitted and Error set when etcd could not be read.
type statusBody struct {
	Local   takeover.LocalStatus    `json:"local"`
	Cluster *takeover.ClusterStatus `json:"cluster,omitempty"`
	Error   string                  `json:"error,omitempty"`
}

// readCluster reads the cluster status for /status and /ui/state.json: the status and
// 200, or nil, the error text and 503 when etcd cannot answer within ctx.
func (s *Server) readCluster(ctx context.Context) (*takeover.ClusterStatus, string, int) {
	cs, err := s.src.Cluster(ctx)
	if err != nil {
		return nil, "cluster status unavailable: " + err.Error(), http.StatusServiceUnavailable
	}
	return &cs, "", http.StatusOK
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	body := statusBody{Local: s.src.Local()}
	ctx, cancel := context.WithTimeout(r.Context(), clusterTimeout)
	defer cancel()
	var code int
	body.Cluster, body.Error, code = s.readCluster(ctx)
	b, err := json.MarshalIndent(body, "", "  ")
	if err != nil {
		text(w, http.StatusInternalServerError, "encode status: %v", err)
		return
	}
	header(w, "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// text writes a one-line plain text body; every body ends with a newline.
func text(w http.ResponseWriter, code int, format string, args ...any) {
	header(w, "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = fmt.Fprintf(w, format+"\n", args...)
}

func header(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
