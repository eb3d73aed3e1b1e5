package takeover

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the agent's Prometheus series. They live in a registry owned by the agent
// (not the global default registry) so that several agents in one test process do not
// collide.
type metrics struct {
	reg          *prometheus.Registry
	roleHeld     *prometheus.GaugeVec
	transitions  *prometheus.CounterVec
	claimLatency prometheus.Histogram
	stepDuration *prometheus.HistogramVec
	failover     prometheus.Histogram
	nodeState    *prometheus.GaugeVec
	fenceFailed  *prometheus.CounterVec
}

func newMetrics(keepaliveAge func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		roleHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_role_held",
			Help: "1 while this node holds the role, 0 otherwise.",
		}, []string{"role"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_role_transitions_total",
			Help: "Role transitions on this node by kind (takeover, takeover-failed, release, demote, lost).",
		}, []string{"role", "kind"}),
		claimLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "understudy_claim_latency_seconds",
			Help:    "Time from seeing a role orphaned to winning its claim.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "understudy_takeover_step_seconds",
			Help:    "Duration of each takeover step (detect, fence, exec, ...).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"step"}),
		failover: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "understudy_failover_seconds",
			Help:    "Time from seeing a role orphaned to running it here, for roles that had a previous holder.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		nodeState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_node_state",
			Help: "1 for the state this node is in, 0 for the others.",
		}, []string{"state"}),
		fenceFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_fence_failures_total",
			Help: "Fences of a previous holder (or this node's own registration) that failed, stopping a takeover.",
		}, []string{"role"}),
	}
	keepalive := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "understudy_keepalive_age_seconds",
		Help: "Seconds since the last acknowledged lease keepalive was sent; the agent demotes itself near the TTL.",
	}, keepaliveAge)
	m.reg.MustRegister(m.roleHeld, m.transitions, m.claimLatency, m.stepDuration, m.failover, m.nodeState, m.fenceFailed, keepalive,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) setState(state string) {
	for _, s := range []string{StateProbation, StateStandby, StateActive, StateDraining, StateCordoned} {
		v := 0.0
		if s == state {
			v = 1
		}
		m.nodeState.WithLabelValues(s).Set(v)
	}
}
