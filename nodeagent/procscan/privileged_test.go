package procscan

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
)

// TestPrivilegedCgroupProcsV1 builds a pod-shaped cgroup (pod dir with two
// container dirs) in this host's real cgroup v1 cpu hierarchy, runs a busy
// and an idle process in the containers, finds them with ReadCgroupProcs
// and samples them.
func TestPrivilegedCgroupProcsV1(t *testing.T) {
	hostcg.RequireRoot(t)
	cpuRoot := "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(filepath.Join(cpuRoot, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v1 cpu hierarchy at %s: %v", cpuRoot, err)
	}
	sb := hostcg.New(t)
	pod := filepath.Join(cpuRoot, hostcg.RandomName(t))
	sb.Mkdir(pod, false)
	sb.Mkdir(filepath.Join(pod, "busy"), false)
	sb.Mkdir(filepath.Join(pod, "idle"), false)
	busy := sb.StartBusy(filepath.Join(pod, "busy")).Process.Pid
	idle := sb.Start(filepath.Join(pod, "idle")).Process.Pid

	pids, err := ReadCgroupProcs(pod, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(pids)
	want := []int{busy, idle}
	slices.Sort(want)
	if !slices.Equal(pids, want) {
		t.Fatalf("ReadCgroupProcs(%s) = %v; want the busy and idle processes %v", pod, pids, want)
	}

	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{{Pod: "ns/pod", Tier: wellknown.TierNormal, TGIDs: pids}}
	s.Sample(targets)
	for range 20 {
		time.Sleep(200 * time.Millisecond)
		got := s.Sample(targets)
		if len(got.Threads) > 0 {
			if got.Threads[0].PID != busy || got.ProcessesIdle != 1 {
				t.Fatalf("threads %+v, idle processes %d; want only the busy one to run and the sleeper skipped as idle", got.Threads, got.ProcessesIdle)
			}
			return
		}
	}
	t.Fatal("the busy process never showed usage")
}
