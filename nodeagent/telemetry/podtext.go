package telemetry

import (
	"bytes"
	"cmp"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// podPass is one run over the pods within a family: labelPrefix goes
// before the pod's labels (the pressure kind, which sorts before
// namespace); value gives a pod's value and whether it has one.
type podPass struct {
	labelPrefix string
	value       func(pc *PodCounters) (float64, bool)
}

// appendPodLines writes the per-pod families' lines of samples into their
// families (the text path), each pod's label text built once while it
// lives; the series are sorted by label values as the registry sorts them
// (samples is sorted in place).
func (c *snapshotCollector) appendPodLines(samples []podSample) {
	slices.SortFunc(samples, func(x, y podSample) int {
		return cmp.Or(strings.Compare(x.l.namespace, y.l.namespace), strings.Compare(x.l.pod, y.l.pod),
			strings.Compare(x.l.tier, y.l.tier))
	})
	family := func(f *family, passes ...podPass) {
		b := f.buf
		for _, p := range passes {
			for i := range samples {
				v, ok := p.value(&samples[i].pc)
				if !ok {
					continue
				}
				b = append(b, f.name...)
				b = append(b, '{')
				b = append(b, p.labelPrefix...)
				b = append(b, samples[i].l.text...)
				b = append(b, '}', ' ')
				b = appendFloat(b, v)
				b = append(b, '\n')
			}
		}
		f.buf = b
	}
	family(c.podPressure,
		podPass{`kind="full",`, func(pc *PodCounters) (float64, bool) {
			return pc.PressureFullSeconds, pc.HasPressure && pc.HasPressureFull
		}},
		podPass{`kind="some",`, func(pc *PodCounters) (float64, bool) { return pc.PressureSomeSeconds, pc.HasPressure }})
	family(c.podThrottledPeriods,
		podPass{"", func(pc *PodCounters) (float64, bool) { return pc.ThrottledPeriods, pc.HasPeriods }})
	family(c.podThrottled,
		podPass{"", func(pc *PodCounters) (float64, bool) { return pc.ThrottledSeconds, pc.HasThrottled }})
	family(c.podUsage,
		podPass{"", func(pc *PodCounters) (float64, bool) { return pc.UsageSeconds, pc.HasUsage }})
}

// textBuffers hold scrape bodies (~50 KB at 110 pods) between scrapes.
var textBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// serveText answers a text-format scrape from the text path.
func (m *Metrics) serveText(w http.ResponseWriter, format expfmt.Format, o promhttp.HandlerOpts) {
	buf := textBuffers.Get().(*bytes.Buffer)
	defer textBuffers.Put(buf)
	buf.Reset()
	body, errs := m.appendText(buf.AvailableBuffer())
	buf.Write(body)
	if len(errs) > 0 {
		if o.ErrorLog != nil {
			for _, err := range errs {
				o.ErrorLog.Println("error gathering metrics:", err)
			}
		}
		switch o.ErrorHandling {
		case promhttp.PanicOnError:
			panic(errs[0])
		case promhttp.HTTPErrorOnError:
			http.Error(w, "An error has occurred while serving metrics:\n\n"+errs[0].Error(), http.StatusInternalServerError)
			return
		}
	}
	w.Header().Add("Vary", "Accept")
	w.Header().Set("Content-Type", string(format))
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}
