package nodeagent

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/server"
)

// TestCgroupKnobs: each asserted value is named by the pod whose cgroup
// holds it, a container's cgroup by its pod's, a cpuset in another v1
// hierarchy too, and its path is made relative to the cgroup root; a path
// of no known pod keeps no pod.
func TestCgroupKnobs(t *testing.T) {
	root := "/sys/fs/cgroup"
	pods := []podCgroup{
		{pod: root + "/cpu/kubepods/burstable/podA", dirs: []string{root + "/cpu/kubepods/burstable/podA", root + "/cpuset/kubepods/burstable/podA"}, name: "ns/a", tier: "critical"},
		{pod: root + "/cpu/kubepods/burstable/podAB", dirs: []string{root + "/cpu/kubepods/burstable/podAB"}, name: "ns/ab", tier: "low"},
	}
	got := cgroupKnobs([]writer.Desired{
		{Path: root + "/cpu/kubepods/burstable/podA", File: "cpu.shares", Value: "2048", Applied: "2048", Reason: "tier critical"},
		{Path: root + "/cpuset/kubepods/burstable/podA/ctr1", File: "cpuset.cpus", Value: "3", Applied: "3", Reason: "tier critical: cpuset"},
		{Path: root + "/cpu/kubepods/burstable/podAB", File: "cpu.shares", Value: "128", Applied: "256", Reason: "tier low"},
		{Path: root + "/cpu/kubepods/burstable", File: "cpu.shares", Value: "512", Applied: "512", Reason: "other"},
	}, pods, root)
	want := []server.CgroupKnob{
		{Path: "cpu/kubepods/burstable/podA", File: "cpu.shares", Value: "2048", Applied: "2048", Reason: "tier critical", Pod: "ns/a", Tier: "critical"},
		{Path: "cpuset/kubepods/burstable/podA/ctr1", File: "cpuset.cpus", Value: "3", Applied: "3", Reason: "tier critical: cpuset", Pod: "ns/a", Tier: "critical"},
		{Path: "cpu/kubepods/burstable/podAB", File: "cpu.shares", Value: "128", Applied: "256", Reason: "tier low", Pod: "ns/ab", Tier: "low"},
		{Path: "cpu/kubepods/burstable", File: "cpu.shares", Value: "512", Applied: "512", Reason: "other"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("cgroupKnobs (-want +got):\n%s", d)
	}
}

// TestReadPodCounters: a pod's cpu.stat and cpu.pressure (v2), or
// cpuacct.usage and cpu.stat (v1), add to its tier; a vanished cgroup adds
// nothing and is not counted as read.
func TestReadPodCounters(t *testing.T) {
	v2 := t.TempDir()
	write(t, filepath.Join(v2, "cpu.stat"), "usage_usec 1500000\nnr_throttled 4\nthrottled_usec 250000\n")
	write(t, filepath.Join(v2, "cpu.pressure"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=2000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n")
	v1 := t.TempDir()
	write(t, filepath.Join(v1, "cpuacct.usage"), "3000000000\n")
	write(t, filepath.Join(v1, "cpu.stat"), "nr_periods 10\nnr_throttled 2\nthrottled_time 500000000\n")

	var tp server.TierPerformance
	if !readPodCounters(&tp, podCgroup{pod: v2}, true) || !readPodCounters(&tp, podCgroup{pod: v1}, false) {
		t.Fatal("a present cgroup was not read")
	}
	if readPodCounters(&tp, podCgroup{pod: filepath.Join(v2, "gone")}, true) {
		t.Error("a vanished cgroup counts as read")
	}
	want := server.TierPerformance{CPUSeconds: 4.5, ThrottledPeriods: 6, ThrottledSeconds: 0.75, PressureSomeSeconds: 2}
	if d := cmp.Diff(want, tp); d != "" {
		t.Errorf("counters (-want +got):\n%s", d)
	}
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
