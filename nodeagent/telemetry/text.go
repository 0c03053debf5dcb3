package telemetry

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The agent's metrics reach a scrape by one of two paths. The registry
// path is client_golang's: every collector sends const metrics on a
// channel, the registry checks, hashes and sorts them as dto messages and
// promhttp encodes them (protobuf, and everything Registry().Gather()
// returns to tests). The text path serves the text format, which is what
// Prometheus asks for: the same collectors write each series' line
// straight into its family's buffer, and the families are joined in the
// registry's order. At 110 pods the registry path spent most of a scrape's
// CPU and nearly all of its allocations on that per-series bookkeeping (a
// 32 KB pair of channels per gather alone). Both paths run the same
// collection code through a sink, and TestTextPathMatchesRegistry checks
// that they give the same bytes.

// family is one metric family: its Desc for the registry path, and its
// header and this scrape's lines for the text path.
type family struct {
	name, help string
	typ        string // counter, gauge or histogram
	labels     []string
	// order lists the labels' indexes sorted by name, the order the
	// registry writes them in.
	order  []int
	desc   *prometheus.Desc
	header string
	// Suffixed names of a histogram's series.
	bucket, sum, count string
	// buf holds the text path's lines of the scrape being written
	// (Metrics.textMu).
	buf []byte
}

func newFamily(name, help, typ string, labels ...string) *family {
	full := Namespace + "_" + name
	f := &family{
		name: full, help: help, typ: typ, labels: labels,
		desc:   prometheus.NewDesc(full, help, labels, nil),
		header: "# HELP " + full + " " + helpEscaper.Replace(help) + "\n# TYPE " + full + " " + typ + "\n",
		bucket: full + "_bucket", sum: full + "_sum", count: full + "_count",
	}
	for i := range labels {
		f.order = append(f.order, i)
	}
	slices.SortFunc(f.order, func(a, b int) int { return strings.Compare(labels[a], labels[b]) })
	return f
}

// helpEscaper escapes a HELP text as the text format does: backslash and
// newline (a label value escapes the double quote as well,
// appendLabelValue).
var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// appendLabelValue appends v escaped as a label value.
func appendLabelValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, `\\`...)
		case '\n':
			b = append(b, `\n`...)
		case '"':
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
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

// appendLine appends one series' line: name, the family's labels with the
// values lv (in the Desc's order) written in name order, then le when
// withLE (a histogram bucket's bound), and the value.
func (f *family) appendLine(b []byte, name string, lv []string, withLE bool, le, v float64) []byte {
	b = append(b, name...)
	if len(f.order) > 0 || withLE {
		b = append(b, '{')
		for i, idx := range f.order {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, f.labels[idx]...)
			b = append(b, '=', '"')
			b = appendLabelValue(b, lv[idx])
			b = append(b, '"')
		}
		if withLE {
			if len(f.order) > 0 {
				b = append(b, ',')
			}
			b = append(b, `le="`...)
			b = appendFloat(b, le)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	return append(b, '\n')
}

// appendHistogram appends a histogram's lines: the buckets (bounds sorted,
// cumulative counts), +Inf unless a bound is, the sum and the count.
func (f *family) appendHistogram(lv []string, bounds []float64, cumulative []uint64, count uint64, sum float64) {
	inf := false
	for i, ub := range bounds {
		f.buf = f.appendLine(f.buf, f.bucket, lv, true, ub, float64(cumulative[i]))
		inf = inf || math.IsInf(ub, +1)
	}
	if !inf {
		f.buf = f.appendLine(f.buf, f.bucket, lv, true, math.Inf(+1), float64(count))
	}
	f.buf = f.appendLine(f.buf, f.sum, lv, false, 0, sum)
	f.buf = f.appendLine(f.buf, f.count, lv, false, 0, float64(count))
}

// sink receives a collector's series: on the registry path as const
// metrics on ch, on the text path as lines in the families' buffers.
type sink struct {
	ch   chan<- prometheus.Metric
	text *textScrape
}

// textScrape is the text path's state for one scrape.
type textScrape struct {
	errs   []error
	bounds []float64
	counts []uint64
}

func (s sink) counter(f *family, v float64, lv ...string) {
	s.sample(f, prometheus.CounterValue, v, lv)
}

func (s sink) gauge(f *family, v float64, lv ...string) {
	s.sample(f, prometheus.GaugeValue, v, lv)
}

func (s sink) sample(f *family, t prometheus.ValueType, v float64, lv []string) {
	if s.text == nil {
		// A copy, so the caller's variadic slice stays on its stack.
		s.ch <- prometheus.MustNewConstMetric(f.desc, t, v, slices.Clone(lv)...)
		return
	}
	f.buf = f.appendLine(f.buf, f.name, lv, false, 0, v)
}

// histogram sends a histogram whose buckets map upper bounds to
// cumulative counts.
func (s sink) histogram(f *family, count uint64, sum float64, buckets map[float64]uint64, lv ...string) {
	if s.text == nil {
		s.ch <- prometheus.MustNewConstHistogram(f.desc, count, sum, buckets, slices.Clone(lv)...)
		return
	}
	t := s.text
	t.bounds = t.bounds[:0]
	for ub := range buckets {
		t.bounds = append(t.bounds, ub)
	}
	slices.Sort(t.bounds)
	t.counts = t.counts[:0]
	for _, ub := range t.bounds {
		t.counts = append(t.counts, buckets[ub])
	}
	f.appendHistogram(lv, t.bounds, t.counts, count, sum)
}

// invalid reports that f could not be collected: an invalid metric on the
// registry path (the gather then fails for it), an error on the text path.
func (s sink) invalid(f *family, err error) {
	if s.text == nil {
		s.ch <- prometheus.NewInvalidMetric(f.desc, err)
		return
	}
	s.text.errs = append(s.text.errs, fmt.Errorf("error collecting metric %s: %w", f.name, err))
}

// appendDTOHistogram appends a histogram from its dto message (what a
// prometheus.Histogram writes) on the text path.
func (t *textScrape) appendDTOHistogram(f *family, h *dto.Histogram) {
	t.bounds, t.counts = t.bounds[:0], t.counts[:0]
	for _, b := range h.GetBucket() {
		t.bounds = append(t.bounds, b.GetUpperBound())
		t.counts = append(t.counts, b.GetCumulativeCount())
	}
	f.appendHistogram(nil, t.bounds, t.counts, h.GetSampleCount(), h.GetSampleSum())
}

// describe sends the families' Descs.
func describe(ch chan<- *prometheus.Desc, fams ...*family) {
	for _, f := range fams {
		ch <- f.desc
	}
}

// funcGauge is a gauge read from fn at scrape time.
type funcGauge struct {
	f  *family
	fn func() float64
}

func (g funcGauge) Describe(ch chan<- *prometheus.Desc) { describe(ch, g.f) }
func (g funcGauge) Collect(ch chan<- prometheus.Metric) { g.collect(sink{ch: ch}) }
func (g funcGauge) collect(s sink)                      { s.gauge(g.f, g.fn()) }
