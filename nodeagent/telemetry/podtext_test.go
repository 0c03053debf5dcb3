package telemetry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/infera-io/temper/apis/wellknown"
)

// textPathSnapshot is a node whose pods exercise everything the text path
// writes: both cgroup versions' files, pods with and without each value,
// label values that need escaping or bounding, a recreated pod (same name
// twice), a pod whose cgroup is not found and one whose files are gone.
func textPathSnapshot(t *testing.T, v2 bool) Snapshot {
	t.Helper()
	dir := t.TempDir()
	var pods []Pod
	add := func(ns, name string, tier wellknown.Tier, files map[string]string) {
		cg := filepath.Join(dir, fmt.Sprintf("pod%d", len(pods)))
		for f, c := range files {
			write(t, cg, f, c)
		}
		pods = append(pods, Pod{Namespace: ns, Name: name, Tier: tier, CPUDir: cg})
	}
	if v2 {
		stat := "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 1500000\n"
		both := "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000001\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n"
		some := "some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n"
		add("shop", "web-1", wellknown.TierCritical, map[string]string{"cpu.stat": stat, "cpu.pressure": both})
		add("shop", "web-0", wellknown.TierHigh, map[string]string{"cpu.stat": stat, "cpu.pressure": some})
		add("batch", "crunch", wellknown.TierBackground, map[string]string{"cpu.stat": "usage_usec 0\nnr_throttled 1\n"})
	} else {
		add("shop", "web-1", wellknown.TierCritical, map[string]string{"cpu.stat": "nr_periods 9\nnr_throttled 3\nthrottled_time 250000000\n", "cpuacct.usage": "1000000000\n"})
		add("shop", "web-0", wellknown.TierHigh, map[string]string{"cpu.stat": "nr_throttled 0\n", "cpuacct.usage": "123456789012\n"})
		add("batch", "crunch", wellknown.TierBackground, map[string]string{"cpuacct.usage": "7\n"})
	}
	add(`we"ird\ns`, "a\nb", wellknown.TierLow, map[string]string{"cpu.stat": "nr_throttled 5\n"})
	add("shop", strings.Repeat("x", 300), wellknown.TierNormal, map[string]string{"cpu.stat": "nr_throttled 6\n"})
	add("shop", "web-1", wellknown.TierLow, map[string]string{"cpu.stat": "nr_throttled 99\n"}) // the predecessor: not reported
	pods = append(pods,
		Pod{Namespace: "shop", Name: "pending", Tier: wellknown.TierNormal},
		Pod{Namespace: "shop", Name: "gone", Tier: wellknown.TierNormal, CPUDir: filepath.Join(dir, "gone")})
	s := fullSnapshot("")
	s.CgroupV2, s.Pods = v2, pods
	s.Backend = "cg\"roup\\x\ny"
	s.Lint["quoted\"\\inv\nariant"] = 3
	s.TierSched[wellknown.TierLow] = TierSchedCounters{Enqueued: 1e7, Dispatched: 123456789, StarvationGuard: 1}
	return s
}

// normalised re-encodes families in the text format keyed by name, their
// series sorted by label values (the registry's order): two expositions
// that say the same give the same strings. Families named in moving (the
// agent's own process, whose values move between two scrapes) keep only
// their series count.
func normalised(t *testing.T, fams map[string]*dto.MetricFamily, moving func(string) bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, f := range fams {
		if moving(name) {
			out[name] = fmt.Sprintf("%d series", len(f.GetMetric()))
			continue
		}
		key := func(m *dto.Metric) string {
			var k []string
			for _, l := range m.GetLabel() {
				k = append(k, l.GetName()+"\xff"+l.GetValue())
			}
			return strings.Join(k, "\xfe")
		}
		slices.SortFunc(f.Metric, func(a, b *dto.Metric) int { return strings.Compare(key(a), key(b)) })
		var b bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = b.String()
	}
	return out
}

func parseText(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("the text path wrote what Prometheus cannot parse: %v\n%s", err, body)
	}
	return fams
}

// blocks splits a text exposition into its families (HELP, TYPE and
// series), sorted, without the agent process's own.
func blocks(text string) []string {
	var out []string
	for b := range strings.SplitSeq(text, "# HELP ") {
		if b != "" && !isProcess(b) {
			out = append(out, b)
		}
	}
	slices.Sort(out)
	return out
}

// isProcess: the agent process's own families (CPU, memory, goroutines).
func isProcess(name string) bool { return strings.HasPrefix(name, Namespace+"_agent_") }

// scrape GETs /metrics from h with Accept, and fails unless it is 200.
func scrape(t *testing.T, h http.Handler, accept string) *httptest.ResponseRecorder {
	t.Helper()
	return get(t, h, "Accept", accept)
}

// get GETs /metrics from h with header set to value (when not empty), and
// fails unless the answer is 200.
func get(t *testing.T, h http.Handler, header, value string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if value != "" {
		req.Header.Set(header, value)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %q: status %d: %s", header, value, rec.Code, rec.Body)
	}
	return rec
}

// The text path says what the registry path says for the same snapshot:
// the same families with the same help, type, series, labels (escaped and
// bounded) and values, each family once. Its output parses with
// Prometheus's own text parser.
func TestTextPathMatchesRegistry(t *testing.T) {
	for _, v2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v2=%v", v2), func(t *testing.T) {
			s := textPathSnapshot(t, v2)
			m, err := New(Options{Snapshot: func() Snapshot { return s }, ProcRoot: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			m.ObserveApply(3 * time.Millisecond)
			m.ObserveApply(2 * time.Second)
			h := Handler(m, promhttp.HandlerOpts{})
			for _, accept := range []string{"", "text/plain;version=0.0.4;q=1,*/*;q=0.1"} {
				rec := scrape(t, h, accept)
				if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
					t.Errorf("Content-Type %q", ct)
				}
				body := rec.Body.String()
				for _, name := range []string{"infera_pod_cpu_usage_seconds_total", "infera_runqueue_latency_seconds", "infera_agent_goroutines", "infera_agent_process_cpu_seconds_total"} {
					if n := strings.Count(body, "# TYPE "+name+" "); n != 1 {
						t.Errorf("family %s written %d times", name, n)
					}
				}
				families, err := m.Registry().Gather()
				if err != nil {
					t.Fatal(err)
				}
				want := map[string]*dto.MetricFamily{}
				for _, f := range families {
					want[f.GetName()] = f
				}
				// Byte for byte, family by family (the agent's own
				// process aside): the same order of series, escaping and
				// number format as expfmt's encoding of the registry's.
				var enc bytes.Buffer
				e := expfmt.NewEncoder(&enc, expfmt.NewFormat(expfmt.TypeTextPlain))
				for _, f := range families {
					if err := e.Encode(f); err != nil {
						t.Fatal(err)
					}
				}
				if g, w := blocks(body), blocks(enc.String()); !slices.Equal(g, w) {
					t.Errorf("text path:\n%s\nregistry:\n%s", strings.Join(g, "# HELP "), strings.Join(w, "# HELP "))
				}
				// And as Prometheus reads it.
				got, wantText := normalised(t, parseText(t, body), isProcess), normalised(t, want, isProcess)
				for name, w := range wantText {
					if got[name] != w {
						t.Errorf("family %s:\ntext path:\n%s\nregistry:\n%s", name, got[name], w)
					}
				}
				for name := range got {
					if _, ok := wantText[name]; !ok {
						t.Errorf("the text path wrote %s, the registry has no such family", name)
					}
				}
			}
		})
	}
}

// The text path takes one snapshot per scrape for all its families.
func TestTextPathSnapshotsOnce(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	m, err := New(Options{Snapshot: func() Snapshot {
		mu.Lock()
		defer mu.Unlock()
		calls++
		s := fullSnapshot("")
		s.Generation = int64(calls)
		return s
	}, ProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(m, promhttp.HandlerOpts{})
	body := scrape(t, h, "").Body.String()
	if calls != 1 {
		t.Errorf("one scrape took %d snapshots", calls)
	}
	if !strings.Contains(body, "infera_config_generation 1\n") {
		t.Errorf("the scrape does not show the snapshot's generation:\n%s", body)
	}
}

// Protobuf (what Prometheus asks for with native histograms on) goes
// through the registry and carries the same per-pod series.
func TestProtobufScrapeHasPodSeries(t *testing.T) {
	s := textPathSnapshot(t, true)
	m, err := New(Options{Snapshot: func() Snapshot { return s }, ProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec := scrape(t, Handler(m, promhttp.HandlerOpts{}), string(expfmt.NewFormat(expfmt.TypeProtoDelim)))
	if ct := rec.Header().Get("Content-Type"); !strings.Contains(ct, "application/vnd.google.protobuf") {
		t.Fatalf("Content-Type %q, want protobuf", ct)
	}
	dec := expfmt.NewDecoder(rec.Body, expfmt.NewFormat(expfmt.TypeProtoDelim))
	series := map[string]int{}
	for {
		var f dtoFamily
		if err := dec.Decode(&f); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		series[f.GetName()] = len(f.GetMetric())
	}
	// web-1, web-0, crunch, the escaped pod and the long one.
	if n := series["infera_pod_cpu_usage_seconds_total"]; n != 3 {
		t.Errorf("usage series %d, want 3 (pods with usage_usec)", n)
	}
	if n := series["infera_pod_cpu_throttled_periods_total"]; n != 5 {
		t.Errorf("throttled-periods series %d, want 5", n)
	}
	if n := series["infera_pod_cpu_pressure_seconds_total"]; n != 3 {
		t.Errorf("pressure series %d, want 3 (some and full, some)", n)
	}
}

// A series that cannot be collected (here the agent's fd count, its /proc
// missing) answers 500 when asked to, on the text path as on the
// registry's, and is logged and left out, the rest served, when not.
func TestTextPathCollectError(t *testing.T) {
	s := textPathSnapshot(t, false)
	m, err := New(Options{Snapshot: func() Snapshot { return s }, ProcRoot: t.TempDir(), selfProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, accept := range []string{"", string(expfmt.NewFormat(expfmt.TypeProtoDelim))} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		Handler(m, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(rec, req)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "agent_process_open_fds") {
			t.Errorf("Accept %q, HTTPErrorOnError: %d %q, want 500 naming the series", accept, rec.Code, rec.Body)
		}
	}
	var logged bytes.Buffer
	rec := scrape(t, Handler(m, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, ErrorLog: logTo{&logged}}), "")
	if !strings.Contains(rec.Body.String(), "infera_pod_cpu_usage_seconds_total{") {
		t.Errorf("ContinueOnError lost the pod series:\n%s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), "infera_agent_process_open_fds") {
		t.Errorf("ContinueOnError wrote the failed series:\n%s", rec.Body)
	}
	if !strings.Contains(logged.String(), "agent_process_open_fds") {
		t.Errorf("the error was not logged: %q", logged.String())
	}
}

type logTo struct{ w io.Writer }

func (l logTo) Println(v ...any) { fmt.Fprintln(l.w, v...) }

// A scrape beyond MaxRequestsInFlight is answered 503 at once, and one
// beyond Timeout 503 after it, on the text path as on the registry's.
func TestHandlerBounds(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	m, err := New(Options{Snapshot: func() Snapshot {
		entered <- struct{}{}
		<-release
		return Snapshot{}
	}, ProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(m, promhttp.HandlerOpts{MaxRequestsInFlight: 1, Timeout: time.Hour})
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		done <- rec.Code
	}()
	<-entered
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Limit of concurrent requests") {
		t.Errorf("second scrape in flight: %d %q, want 503", rec.Code, rec.Body)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first scrape: status %d", code)
	}

	stuck := make(chan struct{})
	defer close(stuck)
	m2, err := New(Options{Snapshot: func() Snapshot { <-stuck; return Snapshot{} }, ProcRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	Handler(m2, promhttp.HandlerOpts{Timeout: 20 * time.Millisecond}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "Exceeded configured timeout") {
		t.Errorf("stuck scrape: %d %q, want 503", rec.Code, rec.Body)
	}
}
