package procscan

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// BenchmarkSample110PodsIdle samples 110 pods of one sleeping process each:
// after the first sample, each costs one process stat read.
//
//	go test -run '^$' -bench Sample110 -benchmem ./nodeagent/procscan/
func BenchmarkSample110PodsIdle(b *testing.B) {
	targets := make([]Target, 110)
	for i := range targets {
		cmd := exec.Command("sleep", "3600")
		if err := cmd.Start(); err != nil {
			b.Skipf("cannot start a process: %v", err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		targets[i] = Target{Pod: PodKey(fmt.Sprintf("ns/pod-%d", i)), TGIDs: []int{cmd.Process.Pid}}
	}
	benchSample(b, targets)
}

// BenchmarkSample110PodsBusy is the worst case: 110 pods whose process is
// always busy, so every sample reads every thread. Each pod points at this
// benchmark's own process (it runs the sampler, so its CPU time always
// moves) and its threads are read once per pod.
func BenchmarkSample110PodsBusy(b *testing.B) {
	targets := make([]Target, 110)
	for i := range targets {
		targets[i] = Target{Pod: PodKey(fmt.Sprintf("ns/pod-%d", i)), TGIDs: []int{os.Getpid()}}
	}
	benchSample(b, targets)
}

func benchSample(b *testing.B, targets []Target) {
	s, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	s.Sample(targets)
	var threads, cpu float64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		got := s.Sample(targets)
		threads += float64(got.ThreadsRead)
		cpu += float64(got.CPUTime.Nanoseconds())
	}
	b.ReportMetric(threads/float64(b.N), "threads/op")
	b.ReportMetric(cpu/float64(b.N), "cpu-ns/op")
}
