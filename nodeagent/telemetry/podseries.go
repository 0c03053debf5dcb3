package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The per-pod series are most of a scrape (five families × every pod).
// prometheus.NewConstMetric builds and sorts a fresh set of label pairs for
// each of them on every scrape, which was a quarter of a scrape's
// allocations; a pod's labels do not change while it lives, so they are
// built once and reused until the pod is gone.

// podLabels are one pod's label pairs, sorted by name as the registry
// expects (it copies and sorts unsorted ones): base is namespace, pod, tier;
// some and full add the pressure kind. They are never modified once built,
// so concurrent scrapes may share them.
type podLabels struct {
	base, some, full []*dto.LabelPair
	// namespace, pod and tier as label values; text is them in the text
	// exposition format (`namespace="…",pod="…",tier="…"`, escaped).
	namespace, pod, tier string
	text                 string
	round                uint64
}

// podLabelCache holds the pods' label pairs between scrapes; the collector's
// mutex guards it.
type podLabelCache struct {
	m     map[[3]string]*podLabels
	round uint64
}

func (c *podLabelCache) begin() {
	c.round++
	if c.m == nil {
		c.m = map[[3]string]*podLabels{}
	}
}

// end forgets the pods this scrape did not report.
func (c *podLabelCache) end() {
	for k, l := range c.m {
		if l.round != c.round {
			delete(c.m, k)
		}
	}
}

// get returns the pod's label pairs; pressure is the family with the extra
// kind label (the others have namespace, pod and tier only).
func (c *podLabelCache) get(pressure *prometheus.Desc, namespace, name, tier string) *podLabels {
	k := [3]string{namespace, name, tier}
	l := c.m[k]
	if l == nil {
		l = &podLabels{
			some:      prometheus.MakeLabelPairs(pressure, []string{namespace, name, tier, "some"}),
			full:      prometheus.MakeLabelPairs(pressure, []string{namespace, name, tier, "full"}),
			namespace: namespace, pod: name, tier: tier,
			text: podLabelText(namespace, name, tier),
		}
		// Sorted by name, "kind" comes first; the rest is namespace, pod
		// and tier, shared read-only.
		l.base = l.some[1:]
		c.m[k] = l
	}
	l.round = c.round
	return l
}

// podCounter is a counter sample with prebuilt label pairs.
type podCounter struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
}

func (m podCounter) Desc() *prometheus.Desc { return m.desc }

func (m podCounter) Write(out *dto.Metric) error {
	v := m.value
	out.Label = m.labels
	out.Counter = &dto.Counter{Value: &v}
	return nil
}

// podLabelText is a pod's labels in the text format, in name order.
func podLabelText(namespace, name, tier string) string {
	b := appendLabelValue([]byte(`namespace="`), namespace)
	b = append(b, `",pod="`...)
	b = appendLabelValue(b, name)
	b = append(b, `",tier="`...)
	b = appendLabelValue(b, tier)
	return string(append(b, '"'))
}
