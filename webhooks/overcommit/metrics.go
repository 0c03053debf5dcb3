package overcommit

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Admission results, the values of the result label.
const (
	ResultDeflated    = "deflated"
	ResultDryRun      = "dry_run"
	ResultSkipped     = "skipped"
	ResultNotOptedIn  = "not_opted_in"
	ResultExempt      = "exempt"
	ResultUnreadable  = "unreadable"
	ResultInternalErr = "internal_error"
)

// Metrics are the webhook's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	admissions *prometheus.CounterVec
	deflated   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (the manager's
// registry in production).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infera_overcommit_admissions_total",
			Help: "Pod admissions the overcommit webhook answered, by result.",
		}, []string{"result"}),
		deflated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "infera_overcommit_cpu_deflated_millicores_total",
			Help: "CPU request the overcommit webhook took off pods at admission, by namespace (dry runs excluded).",
		}, []string{"namespace"}),
	}
	for _, c := range []**prometheus.CounterVec{&m.admissions, &m.deflated} {
		if err := reg.Register(*c); err != nil {
			// A second manager in the same process (tests) shares the
			// counters of the first.
			var are prometheus.AlreadyRegisteredError
			existing, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				existing, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("failed to register overcommit metrics: %w", err)
			}
			*c = existing
		}
	}
	return m, nil
}

func (m *Metrics) admitted(result string) {
	if m != nil {
		m.admissions.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) freed(namespace string, p Plan) {
	if m == nil {
		return
	}
	var milli int64
	for _, c := range p.Changes {
		milli += c.From.MilliValue() - c.To.MilliValue()
	}
	m.deflated.WithLabelValues(namespace).Add(float64(milli))
}
