package server

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

type usageAgent struct {
	*fakeAgent
	usage Usage
	ns    string // the namespace asked for
}

func (a *usageAgent) Usage(_ context.Context, ns string) (Usage, error) {
	a.ns = ns
	return a.usage, nil
}

// TestGetUsage: the samples become cores and their statistics; the samples
// themselves only when asked for; an agent without usage is UNIMPLEMENTED.
func TestGetUsage(t *testing.T) {
	_, plain := startServer(t, newFakeAgent(), Options{})
	_, err := plain.GetUsage(context.Background(), &inferav1.GetUsageRequest{})
	wantStatus(t, err, codes.Unimplemented, "usage")

	to := time.Date(2026, 12, 3, 22, 0, 0, 0, time.UTC)
	a := &usageAgent{fakeAgent: newFakeAgent(), usage: Usage{
		NodeName: "n1", Available: true, Samples: 4, From: to.Add(-40 * time.Second), To: to, Interval: 10 * time.Second, Capped: 1,
		Pods:  []PodUsage{{Namespace: "ns", Name: "web", UID: "u1", Tier: "normal", RequestMilli: 500, Milli: []float64{100, 300, 200, 400}}},
		Tiers: []TierCPU{{Tier: "normal", Pods: 1, RequestMilli: 500, Milli: []float64{100, 300, 200, 400}}},
	}}
	_, c := startServer(t, a, Options{})
	got, err := c.GetUsage(context.Background(), &inferav1.GetUsageRequest{Namespace: "ns", IncludeSamples: true})
	if err != nil {
		t.Fatal(err)
	}
	stats := &inferav1.CPUUsageStats{Samples: 4, CurrentCores: 0.4, MeanCores: 0.25, P50Cores: 0.2, P95Cores: 0.4, MaxCores: 0.4}
	want := &inferav1.GetUsageResponse{
		NodeName: "n1", Available: true, Samples: 4, WindowSeconds: 40, IntervalSeconds: 10, SampleTime: timestamppb.New(to), CappedPods: 1,
		Pods:  []*inferav1.PodCPUUsage{{Namespace: "ns", Name: "web", Uid: "u1", Tier: "normal", RequestMilli: 500, Usage: stats, SampleCores: []float32{0.1, 0.3, 0.2, 0.4}}},
		Tiers: []*inferav1.TierCPUUsage{{Tier: "normal", Pods: 1, RequestMilli: 500, Usage: stats}},
	}
	if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.SortRepeatedFields(&inferav1.GetUsageResponse{}), cmpFloat()); diff != "" || a.ns != "ns" {
		t.Errorf("GetUsage (namespace %q) (-want +got):\n%s", a.ns, diff)
	}
	got, err = c.GetUsage(context.Background(), &inferav1.GetUsageRequest{})
	if err != nil || len(got.GetPods()[0].GetSampleCores()) != 0 {
		t.Errorf("GetUsage without include_samples = %v, %v; want no samples", got, err)
	}
}

func cmpFloat() cmp.Option {
	return cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })
}
