package server

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/usage"
)

// UsageAgent is an Agent that also serves GetUsage. It is a separate
// interface so that Agents without usage keep compiling; the server
// answers UNIMPLEMENTED for them.
type UsageAgent interface {
	// Usage returns the usage samples the agent holds, of the pods in
	// namespace (every pod when empty); tiers cover every pod.
	Usage(ctx context.Context, namespace string) (Usage, error)
}

// Usage is what the observation layer sampled.
type Usage struct {
	NodeName string
	// Available is false when the observation layer is off; Reason says
	// why.
	Available bool
	Reason    string
	// Samples is how many samples the window holds; From is the start of
	// the oldest, To the newest, Interval the newest's interval.
	Samples  int
	From, To time.Time
	Interval time.Duration
	// Capped counts pods whose threads the newest sample did not all read.
	Capped int
	Pods   []PodUsage
	Tiers  []TierCPU
}

// PodUsage is one pod's samples, in millicores, oldest first.
type PodUsage struct {
	Namespace, Name, UID, Tier string
	RequestMilli               int64
	Milli                      []float64
}

// TierCPU is one tier's per-sample sums, in millicores, oldest first.
type TierCPU struct {
	Tier         string
	Pods         int
	RequestMilli int64
	Milli        []float64
}

// GetUsage implements AgentService.
func (s *GRPCServer) GetUsage(ctx context.Context, req *inferav1.GetUsageRequest) (*inferav1.GetUsageResponse, error) {
	ua, ok := s.agent.(UsageAgent)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this agent does not serve usage")
	}
	u, err := ua.Usage(ctx, req.GetNamespace())
	if err != nil {
		return nil, s.toStatus("get the usage", err)
	}
	return usageToProto(u, req.GetIncludeSamples()), nil
}

func usageToProto(u Usage, samples bool) *inferav1.GetUsageResponse {
	r := &inferav1.GetUsageResponse{
		NodeName: bound(u.NodeName, maxNameLen), Available: u.Available, Reason: bound(u.Reason, maxReasonLen),
		Samples: int32(u.Samples), IntervalSeconds: u.Interval.Seconds(), CappedPods: int32(u.Capped),
	}
	if u.Samples > 0 {
		r.WindowSeconds = u.To.Sub(u.From).Seconds()
		r.SampleTime = timestamppb.New(u.To)
	}
	for _, p := range u.Pods {
		pp := &inferav1.PodCPUUsage{
			Namespace: bound(p.Namespace, maxNameLen), Name: bound(p.Name, maxNameLen), Uid: bound(p.UID, maxUIDLen),
			Tier: bound(p.Tier, maxShortLen), RequestMilli: p.RequestMilli, Usage: statsToProto(usage.Summarize(cores(p.Milli))),
		}
		if samples {
			pp.SampleCores = make([]float32, len(p.Milli))
			for i, m := range p.Milli {
				pp.SampleCores[i] = float32(m / 1000)
			}
		}
		r.Pods = append(r.Pods, pp)
	}
	for _, t := range u.Tiers {
		r.Tiers = append(r.Tiers, &inferav1.TierCPUUsage{
			Tier: bound(t.Tier, maxShortLen), Pods: int32(t.Pods), RequestMilli: t.RequestMilli,
			Usage: statsToProto(usage.Summarize(cores(t.Milli))),
		})
	}
	return r
}

func cores(milli []float64) []float64 {
	out := make([]float64, len(milli))
	for i, m := range milli {
		out[i] = m / 1000
	}
	return out
}

// statsToProto converts usage statistics.
func statsToProto(s usage.Stats) *inferav1.CPUUsageStats {
	return &inferav1.CPUUsageStats{Samples: int32(s.Samples), CurrentCores: s.Current, MeanCores: s.Mean,
		P50Cores: s.P50, P95Cores: s.P95, MaxCores: s.Max}
}
