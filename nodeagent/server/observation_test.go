package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// observingAgent is a fakeAgent that also serves observations.
type observingAgent struct {
	*fakeAgent
	obs Observation
}

func (a observingAgent) Observation(context.Context) (Observation, error) { return a.obs, nil }

// TestGetObservation: the observation goes over the wire with the
// histogram's buckets in ascending order, at most MaxTopThreads threads,
// values from the node bounded and valid UTF-8; an agent that does not
// observe answers UNIMPLEMENTED.
func TestGetObservation(t *testing.T) {
	now := time.Date(2026, 12, 3, 23, 0, 0, 0, time.UTC)
	obs := Observation{NodeName: "n1", Time: now, Backend: "cgroup", CgroupV2: true,
		Tiers: []TierPerformance{{Tier: "critical", Pods: 2, PodsRead: 1, CPUSeconds: 12.5, ThrottledPeriods: 3, ThrottledSeconds: 0.25,
			RunQueue: &RunQueueLatency{Count: 10, SumSeconds: 0.01, Buckets: map[float64]uint64{0.004: 9, 0.001: 5, 0.016: 10}}}},
		Pressure:    NodePressure{Available: true, SomeAvg10: 1.5},
		CgroupKnobs: []CgroupKnob{{Path: "kubepods.slice/p", File: "cpu.weight", Value: "80", Applied: "80\xff", Reason: strings.Repeat("r", 5000), Pod: "ns/p", Tier: "critical"}},
		SampleTime:  now.Add(-time.Second), SampleInterval: time.Second,
		CgroupWrites: &CgroupWriteCounters{Writes: 40, Drift: 3, Errors: 1, Gone: 2, Unchanged: 100},
	}
	v := PlacementVerdict{Invariant: "critical_on_fenced_cpus", Violations: 9, Checked: 12, Message: "critical threads ran outside the fence"}
	for i := range 9 {
		v.Examples = append(v.Examples, PlacementExample{Pod: "ns/p", Tier: "critical", TID: 100 + i, CPU: 0, Detail: "cpu 0 is not fenced"})
	}
	obs.Placement = []PlacementVerdict{v, {Invariant: "no_background_on_fenced", OK: true, Checked: 4}}
	for i := range 30 {
		obs.TopThreads = append(obs.TopThreads, BusyThread{TID: i + 1, PID: 1, Comm: "worker", Pod: "ns/p", Tier: "critical", MilliCPU: float64(30 - i)})
	}
	_, c := startServer(t, observingAgent{fakeAgent: newFakeAgent(), obs: obs}, Options{})
	got, err := c.GetObservation(t.Context(), &inferav1.GetObservationRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetNodeName() != "n1" || !got.GetTime().AsTime().Equal(now) || !got.GetCgroupV2() || got.GetSampleIntervalSeconds() != 1 {
		t.Errorf("header = %v", got)
	}
	rq := got.GetTiers()[0].GetRunQueue()
	var les []float64
	for _, b := range rq.GetBuckets() {
		les = append(les, b.GetLeSeconds())
	}
	if rq.GetCount() != 10 || len(les) != 3 || les[0] != 0.001 || les[1] != 0.004 || les[2] != 0.016 || rq.GetBuckets()[0].GetCount() != 5 {
		t.Errorf("run queue = %v, want 3 buckets in ascending order", rq)
	}
	if n := len(got.GetTopThreads()); n != MaxTopThreads || got.GetTopThreads()[0].GetTid() != 1 {
		t.Errorf("%d top threads (first %v), want the first %d", n, got.GetTopThreads()[0], MaxTopThreads)
	}
	k := got.GetCgroupKnobs()[0]
	if k.GetApplied() != "80\uFFFD" || len(k.GetReason()) != maxReasonLen || k.GetPod() != "ns/p" {
		t.Errorf("knob = applied %q, reason of %d bytes, pod %q: want valid UTF-8 and the reason cut to %d", k.GetApplied(), len(k.GetReason()), k.GetPod(), maxReasonLen)
	}

	if w := got.GetCgroupWrites(); w.GetWrites() != 40 || w.GetDrift() != 3 || w.GetErrors() != 1 || w.GetGone() != 2 || w.GetUnchanged() != 100 {
		t.Errorf("cgroup writes = %v", w)
	}
	pl := got.GetPlacement()
	if len(pl) != 2 || pl[0].GetInvariant() != "critical_on_fenced_cpus" || pl[0].GetOk() || pl[0].GetViolations() != 9 || pl[0].GetChecked() != 12 ||
		len(pl[0].GetExamples()) != MaxPlacementExamples || pl[0].GetExamples()[0].GetTid() != 100 || !pl[1].GetOk() {
		t.Errorf("placement = %v, want both verdicts and the first %d examples", pl, MaxPlacementExamples)
	}

	_, plain := startServer(t, newFakeAgent(), Options{})
	if _, err := plain.GetObservation(t.Context(), &inferav1.GetObservationRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("GetObservation of an agent without observations = %v, want UNIMPLEMENTED", err)
	}
}
