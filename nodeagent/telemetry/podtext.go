package telemetry

import (
	"bytes"
	"cmp"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// The text path of /metrics. The per-pod families are nine in ten of a
// scrape's series; through the registry each of them became a dto.Metric
// that was hashed, checked for consistency, sorted and encoded again, which
// was most of a scrape's CPU once the files were cheap to read. The text
// path writes them straight into the response, with each pod's label text
// built once while the pod lives, and gathers the rest through a registry
// as before. The output is what the registry path gives for the same
// snapshot (TestTextPathMatchesRegistry); other formats (protobuf, which
// Prometheus asks for only with native histograms enabled) still go through
// the registry.

// podFamily is one per-pod family's name (after the namespace) and help.
type podFamily struct{ name, help string }

var (
	podUsage            = podFamily{"pod_cpu_usage_seconds_total", "CPU time used by the pod's cgroup."}
	podThrottled        = podFamily{"pod_cpu_throttled_seconds_total", "Time the pod's cgroup was throttled by its CPU limit."}
	podThrottledPeriods = podFamily{"pod_cpu_throttled_periods_total", "CFS periods in which the pod's cgroup was throttled."}
	podPressure         = podFamily{"pod_cpu_pressure_seconds_total", "Time some or all of the pod's tasks were stalled waiting for CPU (cgroup v2 cpu.pressure)."}
)

// header is the family's HELP and TYPE lines.
func (f podFamily) header() string {
	n := Namespace + "_" + f.name
	return "# HELP " + n + " " + helpEscaper.Replace(f.help) + "\n# TYPE " + n + " counter\n"
}

// Escaping of the text format: a HELP text escapes backslash and newline,
// a label value the double quote as well.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeLabelValue(v string) string { return labelEscaper.Replace(v) }

// podPass is one run over the pods within a family: labelPrefix goes
// before the pod's labels (the pressure kind, which sorts before
// namespace); value gives a pod's value and whether it has one.
type podPass struct {
	labelPrefix string
	value       func(pc *PodCounters) (float64, bool)
}

// appendPodText appends the per-pod families of samples to b in the text
// exposition format: each family once, its series sorted by label values
// as the registry sorts them (samples is sorted in place).
func appendPodText(b []byte, samples []podSample) []byte {
	slices.SortFunc(samples, func(x, y podSample) int {
		return cmp.Or(strings.Compare(x.l.namespace, y.l.namespace), strings.Compare(x.l.pod, y.l.pod),
			strings.Compare(x.l.tier, y.l.tier))
	})
	// family appends one family's series, its header only if it has any.
	family := func(f podFamily, header string, passes []podPass) {
		name := Namespace + "_" + f.name
		wrote := false
		for _, p := range passes {
			for i := range samples {
				v, ok := p.value(&samples[i].pc)
				if !ok {
					continue
				}
				if !wrote {
					b = append(b, header...)
					wrote = true
				}
				b = append(b, name...)
				b = append(b, '{')
				b = append(b, p.labelPrefix...)
				b = append(b, samples[i].l.text...)
				b = append(b, '}', ' ')
				b = appendFloat(b, v)
				b = append(b, '\n')
			}
		}
	}
	family(podPressure, podHeaders.pressure, []podPass{
		{`kind="full",`, func(pc *PodCounters) (float64, bool) {
			return pc.PressureFullSeconds, pc.HasPressure && pc.HasPressureFull
		}},
		{`kind="some",`, func(pc *PodCounters) (float64, bool) { return pc.PressureSomeSeconds, pc.HasPressure }},
	})
	family(podThrottledPeriods, podHeaders.periods, []podPass{
		{"", func(pc *PodCounters) (float64, bool) { return pc.ThrottledPeriods, pc.HasPeriods }},
	})
	family(podThrottled, podHeaders.throttled, []podPass{
		{"", func(pc *PodCounters) (float64, bool) { return pc.ThrottledSeconds, pc.HasThrottled }},
	})
	family(podUsage, podHeaders.usage, []podPass{
		{"", func(pc *PodCounters) (float64, bool) { return pc.UsageSeconds, pc.HasUsage }},
	})
	return b
}

var podHeaders = struct{ pressure, periods, throttled, usage string }{
	podPressure.header(), podThrottledPeriods.header(), podThrottled.header(), podUsage.header(),
}

// appendFloat formats v as the text format does (expfmt's writeFloat).
func appendFloat(b []byte, v float64) []byte {
	switch {
	case v == 1:
		return append(b, '1')
	case v == 0:
		return append(b, '0')
	case v == -1:
		return append(b, "-1"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// textBuffers hold scrape bodies (~50 KB at 110 pods) between scrapes.
var textBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// serveText answers a text-format scrape: one snapshot, the registry's
// other families encoded by expfmt, then the per-pod families.
func (m *Metrics) serveText(w http.ResponseWriter, format expfmt.Format, o promhttp.HandlerOpts) {
	buf := textBuffers.Get().(*bytes.Buffer)
	defer textBuffers.Put(buf)
	buf.Reset()

	m.restMu.Lock()
	c := m.snap
	s := c.o.Snapshot()
	c.held = &s
	families, err := m.rest.Gather()
	c.held = nil
	if err != nil {
		if o.ErrorLog != nil {
			o.ErrorLog.Println("error gathering metrics:", err)
		}
		switch o.ErrorHandling {
		case promhttp.PanicOnError:
			m.restMu.Unlock()
			panic(err)
		case promhttp.HTTPErrorOnError:
			m.restMu.Unlock()
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	enc := expfmt.NewEncoder(buf, format)
	for _, f := range families {
		if err := enc.Encode(f); err != nil {
			m.restMu.Unlock()
			if o.ErrorLog != nil {
				o.ErrorLog.Println("error encoding metric family:", err)
			}
			http.Error(w, "An error has occurred while serving metrics:\n\nerror encoding metric family: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	c.mu.Lock()
	buf.Write(appendPodText(buf.AvailableBuffer(), c.readPods(s)))
	c.mu.Unlock()
	m.restMu.Unlock()

	w.Header().Set("Content-Type", string(format))
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
