package server

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// MaxTopThreads bounds Observation.TopThreads on the wire.
const MaxTopThreads = 20

// Observer is implemented by an Agent that serves GetObservation; the
// server answers UNIMPLEMENTED for an Agent that does not. It must answer
// from memory and the cgroup files of the node's pods, honouring ctx.
type Observer interface {
	Observation(ctx context.Context) (Observation, error)
}

// Observation is what the agent observes on its node at one moment (see
// the Observation message).
type Observation struct {
	NodeName string
	Time     time.Time
	Backend  string
	CgroupV2 bool
	// Tiers are the workload tiers, highest first.
	Tiers               []TierPerformance
	Pressure            NodePressure
	RunQueueUnavailable string
	TopThreads          []BusyThread
	// SampleTime is zero before the first thread sample.
	SampleTime             time.Time
	SampleInterval         time.Duration
	ThreadsUnavailable     string
	CgroupKnobs            []CgroupKnob
	CgroupKnobsUnavailable string
	// Placement is the placement linter's verdicts on the last sample.
	Placement            []PlacementVerdict
	PlacementUnavailable string
	// CgroupWrites is nil with a backend that writes no cgroup file.
	CgroupWrites *CgroupWriteCounters
}

// PlacementVerdict is the linter's judgement of one invariant.
type PlacementVerdict struct {
	Invariant           string
	OK                  bool
	Violations, Checked int
	Message             string
	Examples            []PlacementExample
}

// PlacementExample is one offending thread.
type PlacementExample struct {
	Pod, Tier, Layer, Comm, Detail string
	TID, PID, CPU                  int
	MilliCPU                       float64
}

// CgroupWriteCounters are the cgroup writer's counters.
type CgroupWriteCounters struct {
	Writes, Drift, Errors, Gone, Unchanged uint64
}

// MaxPlacementExamples bounds PlacementVerdict.Examples on the wire.
const MaxPlacementExamples = 5

// TierPerformance is one tier's counters, summed over its pods.
type TierPerformance struct {
	Tier                string
	Pods, PodsRead      int
	CPUSeconds          float64
	ThrottledPeriods    uint64
	ThrottledSeconds    float64
	PressureSomeSeconds float64
	SampledMilliCPU     float64
	// RunQueue is nil when the eBPF programs are not loaded.
	RunQueue *RunQueueLatency
}

// RunQueueLatency is a cumulative histogram; Buckets maps an upper bound
// in seconds to the count at or below it.
type RunQueueLatency struct {
	Count      uint64
	SumSeconds float64
	Buckets    map[float64]uint64
}

// NodePressure is the node's CPU PSI.
type NodePressure struct {
	Available                       bool
	Reason                          string
	SomeAvg10, SomeAvg60, FullAvg10 float64
	SomeTotalSeconds                float64
}

// BusyThread is one of the busiest threads.
type BusyThread struct {
	TID, PID, CPU          int
	Comm, Pod, Tier, Layer string
	MilliCPU               float64
}

// CgroupKnob is one value the cgroup backend asserts.
type CgroupKnob struct {
	Path, File, Value, Applied, Reason, Pod, Tier string
}

// GetObservation implements AgentService.
func (s *GRPCServer) GetObservation(ctx context.Context, _ *inferav1.GetObservationRequest) (*inferav1.Observation, error) {
	o, ok := s.agent.(Observer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this agent does not serve observations")
	}
	obs, err := o.Observation(ctx)
	if err != nil {
		return nil, s.toStatus("get the observation", err)
	}
	return observationToProto(obs), nil
}

func observationToProto(o Observation) *inferav1.Observation {
	r := &inferav1.Observation{
		NodeName: bound(o.NodeName, maxNameLen), Time: timestamppb.New(o.Time), Backend: bound(o.Backend, maxShortLen), CgroupV2: o.CgroupV2,
		Pressure: &inferav1.NodePressure{Available: o.Pressure.Available, Reason: bound(o.Pressure.Reason, maxReasonLen),
			SomeAvg10: o.Pressure.SomeAvg10, SomeAvg60: o.Pressure.SomeAvg60, FullAvg10: o.Pressure.FullAvg10,
			SomeTotalSeconds: o.Pressure.SomeTotalSeconds},
		RunQueueUnavailable: bound(o.RunQueueUnavailable, maxReasonLen), SampleIntervalSeconds: o.SampleInterval.Seconds(),
		ThreadsUnavailable: bound(o.ThreadsUnavailable, maxReasonLen), CgroupKnobsUnavailable: bound(o.CgroupKnobsUnavailable, maxReasonLen),
	}
	if !o.SampleTime.IsZero() {
		r.SampleTime = timestamppb.New(o.SampleTime)
	}
	for _, t := range o.Tiers {
		tp := &inferav1.TierPerformance{Tier: bound(t.Tier, maxShortLen), Pods: int32(t.Pods), PodsRead: int32(t.PodsRead),
			CpuSeconds: t.CPUSeconds, ThrottledPeriods: t.ThrottledPeriods, ThrottledSeconds: t.ThrottledSeconds,
			PressureSomeSeconds: t.PressureSomeSeconds, SampledMilliCpu: t.SampledMilliCPU}
		if h := t.RunQueue; h != nil {
			tp.RunQueue = &inferav1.RunQueueLatency{Count: h.Count, SumSeconds: h.SumSeconds}
			for _, le := range sortedBounds(h.Buckets) {
				tp.RunQueue.Buckets = append(tp.RunQueue.Buckets, &inferav1.LatencyBucket{LeSeconds: le, Count: h.Buckets[le]})
			}
		}
		r.Tiers = append(r.Tiers, tp)
	}
	for _, t := range o.TopThreads[:min(len(o.TopThreads), MaxTopThreads)] {
		r.TopThreads = append(r.TopThreads, &inferav1.BusyThread{Tid: int32(t.TID), Pid: int32(t.PID), Comm: bound(t.Comm, maxShortLen),
			Pod: bound(t.Pod, 2*maxNameLen+1), Tier: bound(t.Tier, maxShortLen), Layer: bound(t.Layer, maxShortLen), Cpu: int32(t.CPU), MilliCpu: t.MilliCPU})
	}
	for _, k := range o.CgroupKnobs {
		r.CgroupKnobs = append(r.CgroupKnobs, &inferav1.CgroupKnob{Path: bound(k.Path, maxPathLen), File: bound(k.File, maxShortLen), Value: bound(k.Value, maxValueLen),
			Applied: bound(k.Applied, maxValueLen), Reason: bound(k.Reason, maxReasonLen), Pod: bound(k.Pod, 2*maxNameLen+1), Tier: bound(k.Tier, maxShortLen)})
	}
	for _, v := range o.Placement {
		pv := &inferav1.PlacementVerdict{Invariant: bound(v.Invariant, maxShortLen), Ok: v.OK, Violations: int32(v.Violations),
			Checked: int32(v.Checked), Message: bound(v.Message, maxReasonLen)}
		for _, e := range v.Examples[:min(len(v.Examples), MaxPlacementExamples)] {
			pv.Examples = append(pv.Examples, &inferav1.PlacementExample{Pod: bound(e.Pod, 2*maxNameLen+1), Tier: bound(e.Tier, maxShortLen),
				Layer: bound(e.Layer, maxShortLen), Tid: int32(e.TID), Pid: int32(e.PID), Comm: bound(e.Comm, maxShortLen), Cpu: int32(e.CPU),
				MilliCpu: e.MilliCPU, Detail: bound(e.Detail, maxReasonLen)})
		}
		r.Placement = append(r.Placement, pv)
	}
	r.PlacementUnavailable = bound(o.PlacementUnavailable, maxReasonLen)
	if w := o.CgroupWrites; w != nil {
		r.CgroupWrites = &inferav1.CgroupWriteCounters{Writes: w.Writes, Drift: w.Drift, Errors: w.Errors, Gone: w.Gone, Unchanged: w.Unchanged}
	}
	return r
}

func sortedBounds(m map[float64]uint64) []float64 {
	out := make([]float64, 0, len(m))
	for le := range m {
		out = append(out, le)
	}
	slices.Sort(out)
	return out
}
