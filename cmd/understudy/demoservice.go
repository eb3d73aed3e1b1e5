package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

// demoReply is what the demo service answers on GET /: enough for a client to see which
// node and which tenure (fencing token) served it, and that the process changed.
type demoReply struct {
	Role  string `json:"role"`
	Node  string `json:"node"`
	Token int64  `json:"token"`
	PID   int    `json:"pid"`
}

// demoShutdownGrace is how long demo-service lets requests in progress finish on
// SIGTERM; its requests take microseconds (a write: one fsync).
const demoShutdownGrace = 200 * time.Millisecond

func newDemoServiceCmd() *cobra.Command {
	var listen, data string
	cmd := &cobra.Command{
		Use:   "demo-service",
		Short: "Run a tiny HTTP service to use as a role's executable in demos and tests",
		Long: `demo-service answers GET / with {"role","node","token","pid"} taken from the
UNDERSTUDY_ROLE, UNDERSTUDY_NODE and UNDERSTUDY_TOKEN environment the agent gives a role's
executable, and GET /healthz with "ok". It exits cleanly on SIGTERM or SIGINT.

With --data DIR it is also a write log kept in DIR (the role's mounted storage): POST
/write?seq=N appends N with the serving node and token to DIR/writes.log and answers only
after fsync, so an acknowledged write is on the shared disk; GET /writes lists every seq
in the log, so a client can check that none of its acknowledged writes was lost.`,
		Example: `  # in cluster.yaml:
  #   exec: {command: [/usr/local/bin/understudy, demo-service, --listen, "0.0.0.0:8080"]}
  UNDERSTUDY_ROLE=web UNDERSTUDY_NODE=a UNDERSTUDY_TOKEN=7 understudy demo-service --listen 127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var lc net.ListenConfig
			ln, err := lc.Listen(cmd.Context(), "tcp", listen)
			if err != nil {
				return fmt.Errorf("demo-service: listen on %s: %w", listen, err)
			}
			_, _ = fmt.Fprintf(cmd.ErrOrStderr(), "demo-service listening on %s\n", ln.Addr())
			var wl *writeLog
			if data != "" {
				if wl, err = openWriteLog(data); err != nil {
					_ = ln.Close()
					return err
				}
				defer wl.Close()
			}
			return serveDemo(cmd.Context(), ln, demoFromEnv(), wl)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address to listen on (host:port)")
	cmd.Flags().StringVar(&data, "data", "", "directory of the write log (the role's storage); empty: no write log")
	return cmd
}

func demoFromEnv() demoReply {
	token, _ := strconv.ParseInt(os.Getenv("UNDERSTUDY_TOKEN"), 10, 64)
	return demoReply{
		Role:  os.Getenv("UNDERSTUDY_ROLE"),
		Node:  os.Getenv("UNDERSTUDY_NODE"),
		Token: token,
		PID:   os.Getpid(),
	}
}

// serveDemo serves until ctx is done (the signal context of main), then shuts down.
func serveDemo(ctx context.Context, ln net.Listener, reply demoReply, wl *writeLog) error {
	body, err := json.Marshal(reply)
	if err != nil {
		return err
	}
	body = append(body, '\n')
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	if wl != nil {
		wl.routes(mux, reply)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("demo-service: serve: %w", err)
	case <-ctx.Done():
	}
	// ctx is done. A short grace for requests in progress, then close: the agent
	// removes the VIP before it stops the executable, so a connection accepted just
	// before never sends its request, and Shutdown would wait for it until its own
	// deadline (that cost every third graceful move 3 s in the lab).
	sctx, cancel := context.WithTimeout(context.Background(), demoShutdownGrace)
	defer cancel()
	if err = srv.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
