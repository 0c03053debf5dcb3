package telemetry

import (
	"math"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// The agent's process collector reports what client_golang's does, under
// the same names; the two are compared on this test process.
func TestProcessCollectorMatchesLibrary(t *testing.T) {
	ours, lib := prometheus.NewRegistry(), prometheus.NewRegistry()
	ours.MustRegister(newProcessCollector("/proc"))
	lib.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: Namespace + "_agent"}))
	values := func(g prometheus.Gatherer) map[string]float64 {
		fams, err := g.Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				switch {
				case m.GetCounter() != nil:
					out[f.GetName()] = m.GetCounter().GetValue()
				case m.GetGauge() != nil:
					out[f.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	got, want := values(ours), values(lib)
	if len(want) == 0 {
		t.Fatal("the library's process collector reported nothing")
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s: not reported", name)
			continue
		}
		tol := 0.0
		switch name {
		case "infera_agent_process_cpu_seconds_total":
			tol = 0.05 // the library counts clock ticks
		case "infera_agent_process_resident_memory_bytes", "infera_agent_process_virtual_memory_bytes":
			tol = math.Max(w*0.05, 4<<20) // the two gathers allocate in between
		case "infera_agent_process_open_fds":
			tol = 2 // the directory each reads is open while it counts
		case "infera_agent_process_start_time_seconds":
			tol = 0.011 // one clock tick
		case "infera_agent_process_network_receive_bytes_total", "infera_agent_process_network_transmit_bytes_total":
			tol = 1 << 16
		}
		if math.Abs(g-w) > tol {
			t.Errorf("%s = %v, the library says %v (tolerance %v)", name, g, w, tol)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s reported, but the library has no such metric", name)
		}
	}
}

func TestIPExtOctets(t *testing.T) {
	netstat := []byte("TcpExt: SyncookiesSent SyncookiesRecv\nTcpExt: 0 0\n" +
		"IpExt: InNoRoutes InTruncatedPkts InMcastPkts OutMcastPkts InBcastPkts OutBcastPkts InOctets OutOctets\n" +
		"IpExt: 0 0 0 0 0 0 123456 654321\n")
	in, out, ok := ipExtOctets(netstat)
	if !ok || in != 123456 || out != 654321 {
		t.Errorf("ipExtOctets = %v, %v, %v; want 123456, 654321, true", in, out, ok)
	}
	if _, _, ok := ipExtOctets([]byte("IpExt: InOctets\n")); ok {
		t.Error("a header without values reads as ok")
	}
}

// countFDs takes the count from the directory's size where the kernel
// gives it, and it must agree with listing the directory.
func TestCountFDsAgreesWithListing(t *testing.T) {
	fast, err := countFDs("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	listed, err := countDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// Listing opens the directory: one descriptor more while it counts.
	if fast != listed && fast != listed-1 {
		t.Errorf("countFDs = %d, listing /proc/self/fd gives %d", fast, listed)
	}
}
