package lab

// The scale bench's farm (scale.go): the lightweight agents of one run, the etcd
// clients they share, their incarnations, and the node ids allocated before the start of day.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/understudy-ha/understudy/lease"
)

// scaleFarm is one run's agents, the etcd clients they share, and the claim log.
type scaleFarm struct {
	o       ScaleOptions
	e       *scaleEtcd
	st      *lease.Store // on the members' admin client
	roles   []string
	clients []*clientv3.Client
	agents  []*scaleAgent
	byName  map[string]*scaleAgent
	rec     *claimLog

	ctx    context.Context // the agents' parent; stop cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup // one per agent incarnation
}

// newScaleFarm prepares the agents, one etcd client per AgentsPerClient of them. A real
// farm has one client per node, but a thousand gRPC connections on this machine's few
// cores would measure the machine, not etcd; the clients multiplex the agents' watches
// and requests, and etcd's work per request is the same.
func newScaleFarm(ctx context.Context, o ScaleOptions, e *scaleEtcd, nodes, roles int) (_ *scaleFarm, err error) {
	prefix := lease.Prefix(scaleCluster)
	f := &scaleFarm{o: o, e: e, st: lease.NewStore(e.cli, prefix, o.Log), byName: map[string]*scaleAgent{},
		rec: newClaimLog()}
	f.ctx, f.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	f.roles = numbered("role-", roles)
	for i, name := range numbered("n", nodes) {
		if i%o.AgentsPerClient == 0 {
			cli, err := newScaleClient(e.endpoints, o.Log)
			if err != nil {
				return nil, err
			}
			f.clients = append(f.clients, cli)
		}
		cli := f.clients[len(f.clients)-1]
		a := &scaleAgent{f: f, name: name, cli: cli, st: lease.NewStore(cli, prefix, o.Log)}
		f.agents = append(f.agents, a)
		f.byName[name] = a
	}
	return f, nil
}

// numbered returns prefix001..prefixN, zero-padded to N's width so names sort.
func numbered(prefix string, n int) []string {
	width := len(fmt.Sprint(n))
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("%s%0*d", prefix, width, i+1)
	}
	return names
}

// scaleSpec is a cluster spec of roles without resources, one role per node at most.
func scaleSpec(roles []string) []byte {
	var b strings.Builder
	b.WriteString("max_roles_per_node: 1\nroles:\n")
	for _, r := range roles {
		fmt.Fprintf(&b, "  - name: %s\n", r)
	}
	return []byte(b.String())
}

func newScaleClient(endpoints []string, log *zap.Logger) (*clientv3.Client, error) {
	log = log.Named("etcd-client")
	if log.Core().Enabled(zap.WarnLevel) { // retries are expected under load; keep errors
		log = log.WithOptions(zap.IncreaseLevel(zap.ErrorLevel))
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("lab: etcd client for %v: %w", endpoints, err)
	}
	return cli, nil
}

// start runs a new incarnation of agent a, owned by the farm's WaitGroup.
func (f *scaleFarm) start(a *scaleAgent) {
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	a.mu.Lock()
	a.cancel, a.done = cancel, done
	a.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(done)
		defer cancel()
		a.life(ctx)
	}()
}

// stop ends every agent (their sessions are abandoned, not revoked: the members are
// about to go) and closes the clients. Safe to call twice.
func (f *scaleFarm) stop() {
	f.cancel()
	f.wg.Wait()
	for _, cli := range f.clients {
		if err := cli.Close(); err != nil {
			f.o.Log.Debug("close etcd client", zap.Error(err))
		}
	}
	f.clients = nil
}

// allocateIDs gives every node its permanent id, idWorkers at a time. The first error
// stops the others.
func (f *scaleFarm) allocateIDs(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, f.o.Timeout)
	defer cancel()
	start := time.Now()
	next := make(chan *scaleAgent)
	errs := make([]error, idWorkers)
	var wg sync.WaitGroup
	for w := range idWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range next {
				var err error
				if a.id, err = a.st.AllocateID(ctx, a.name); err != nil && errs[w] == nil {
					errs[w] = err
					cancel()
				}
			}
		}()
	}
feed:
	for _, a := range f.agents {
		select {
		case next <- a:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("lab: allocate node ids: %w", err)
	}
	return time.Since(start), nil
}
