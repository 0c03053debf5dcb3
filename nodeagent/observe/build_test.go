package observe

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/procscan"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// fixedParts is a 4-CPU SMT-2 node on the cgroup backend with critical
// fenced on core 1 (CPUs 1 and 3).
func fixedParts() Parts {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	promise := lint.Promise{Reserve: cpuset.Set{0: true}, Layers: []lint.Layer{
		{Name: "critical", Kind: "Confined", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: cpuset.Set{1: true, 3: true}, Protected: true, Confined: true, QuietSiblings: true},
		{Name: "normal", Kind: "Grouped", Tiers: []wellknown.Tier{wellknown.TierNormal}},
		{Name: "background", Kind: "Open", Tiers: []wellknown.Tier{wellknown.TierBackground}, Open: true},
	}}
	sample := &procscan.Sample{
		Time: t0.Add(-2 * time.Second), Interval: 10 * time.Second,
		Threads: []procscan.Thread{
			{TID: 101, PID: 100, Comm: "db writer", Pod: "prod/db-0", Tier: wellknown.TierCritical, CPU: 1, MilliCPU: 812.34},
			{TID: 201, PID: 200, Comm: "batch", Pod: "batch/job-x", Tier: wellknown.TierBackground, CPU: 0, MilliCPU: 400},
			{TID: 301, PID: 300, Comm: "nginx", Pod: "web/front-1", Tier: wellknown.TierNormal, CPU: 2, MilliCPU: 55.55},
		},
		Pods: 3, Processes: 4, ProcessesIdle: 1, ThreadsRead: 7,
		Capped:   []procscan.Cap{{Pod: "batch/job-x", Threads: 5000, Read: 256, Node: false}},
		Vanished: 1,
	}
	sample.Top = sample.Threads[:2]
	sample.CPUs = []procscan.CPUUsage{{CPU: 0, MilliCPU: 400}, {CPU: 1, MilliCPU: 812.34}, {CPU: 2, MilliCPU: 55.55}}
	m := Machine{CPUs: "0-3", CPUCount: 4, SMTSiblings: [][]int{{0, 2}, {1, 3}}, LLCs: []CPUGroup{{ID: 0, CPUs: "0-3"}}, NUMANodes: []CPUGroup{{ID: 0, CPUs: "0-3"}}}
	targets := []procscan.Target{
		{Pod: "prod/db-0", Tier: wellknown.TierCritical, TGIDs: []int{100}},
		{Pod: "web/front-1", Tier: wellknown.TierNormal, TGIDs: []int{300}},
		{Pod: "batch/job-x", Tier: wellknown.TierBackground, TGIDs: []int{200, 201}},
		{Pod: "kube-system/dns", Tier: wellknown.TierSystem},
	}
	return Parts{
		Node: "node-a", Time: t0, Machine: m,
		Enforcement: Enforcement{Backend: "cgroup", Status: "enforcing"},
		Promise:     promise, Targets: targets, Sample: sample,
		Verdicts: lint.Evaluate(promise, LintMachine(m), sample, lint.Options{}),
		PSI:      PSI{Available: true, Some: &PSIRecord{Avg10: 1.5, Avg60: 0.9, Avg300: 0.4, TotalUS: 123456}, Full: &PSIRecord{}},
		Overhead: Overhead{Ticks: 6, CPUSeconds: 0.0042, ObservedSeconds: 60, CoreFraction: 0.00007, LastTickSeconds: 0.0003, MaxTickSeconds: 0.0009, LastTickCPUSeconds: 0.0003, AgentCPUSeconds: 1.2, AgentRSSBytes: 41 << 20},
	}
}

func TestAssembleGolden(t *testing.T) {
	got, err := json.MarshalIndent(Assemble(fixedParts()), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "snapshot.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("failed to read %s (run with -update to create it): %v", golden, err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("snapshot differs from %s (-want +got):\n%s", golden, diff)
	}
}

func TestAssembleLayers(t *testing.T) {
	s := Assemble(fixedParts())
	want := []Layer{
		// critical: 812.34 ms/s over its 2 CPUs.
		{Name: "critical", Kind: "Confined", Tiers: []string{"critical"}, CPUs: "1,3", Util: 0.406, MilliCPU: 812.3, Pods: 1, Threads: 1},
		// normal and background may use what critical does not confine.
		{Name: "normal", Kind: "Grouped", Tiers: []string{"normal"}, CPUs: "0,2", Util: 0.028, MilliCPU: 55.6, Pods: 1, Threads: 1},
		{Name: "background", Kind: "Open", Tiers: []string{"background"}, CPUs: "0,2", Util: 0.2, MilliCPU: 400, Pods: 1, Threads: 1},
	}
	if diff := cmp.Diff(want, s.Layers); diff != "" {
		t.Errorf("layers mismatch (-want +got):\n%s", diff)
	}
	if len(s.TopThreads) != 2 || s.TopThreads[0].Layer != "critical" || s.TopThreads[0].Pod != "prod/db-0" {
		t.Errorf("top threads %+v; want the critical db writer first", s.TopThreads)
	}
}

func TestAssembleBeforeFirstTick(t *testing.T) {
	p := fixedParts()
	p.Sample, p.Verdicts = nil, nil
	b, err := json.Marshal(Assemble(p))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	// Lists are [] rather than null, so that jq '.layers[]' and friends
	// work on a fresh agent.
	for _, k := range []string{"layers", "top_threads", "cpus", "lint"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s is %v, want a JSON list", k, m[k])
		}
	}
}
