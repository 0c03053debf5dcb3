package telemetry

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infera-io/temper/apis/wellknown"
)

// The cost of one /metrics scrape at 110 pods (cgroup v1 files in a faked
// tree, gzip as Prometheus asks for it), on the text path the agent serves
// and, for comparison, through the registry alone:
//
//	go test -run '^$' -bench Scrape -benchmem ./nodeagent/telemetry/
//
// cpu-ns/op is the process's CPU time per scrape (GC included), which
// unlike ns/op does not grow with the load of a shared machine.
func BenchmarkScrape110PodsV1(b *testing.B) {
	dir := b.TempDir()
	var pods []Pod
	for i := range 110 {
		pod := filepath.Join(dir, fmt.Sprintf("pod%03d", i))
		write(b, pod, "cpu.stat", "nr_periods 1000\nnr_throttled 40\nthrottled_time 123456789\n")
		write(b, pod, "cpuacct.usage", "987654321000\n")
		pods = append(pods, Pod{Namespace: "bench", Name: fmt.Sprintf("pod-%03d", i), Tier: wellknown.AllTiers()[i%5], CPUDir: pod})
	}
	proc := filepath.Join(dir, "proc")
	write(b, filepath.Join(proc, "pressure"), "cpu", "some avg10=1.00 avg60=0.50 avg300=0.10 total=7000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
	snap := fullSnapshot("")
	snap.CgroupV2, snap.Pods = false, pods
	m, err := New(Options{Snapshot: func() Snapshot { return snap }, ProcRoot: proc})
	if err != nil {
		b.Fatal(err)
	}
	for _, arm := range []struct {
		name string
		g    prometheus.Gatherer
	}{{"text", m}, {"registry", m.Registry()}} {
		b.Run(arm.name, func(b *testing.B) { benchScrape(b, Handler(arm.g, promhttp.HandlerOpts{})) })
	}
}

func benchScrape(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	var size int
	cpu0 := processCPU()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d", rec.Code)
		}
		n, _ := io.Copy(io.Discard, rec.Body)
		size = int(n)
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(size), "gzip-bytes")
}

// processCPU is this process's user+system CPU time in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
