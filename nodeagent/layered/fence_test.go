package layered

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCriticalFence(t *testing.T) {
	smt := Node{CPUs: 8, Cores: [][]int{{0, 4}, {1, 5}, {2, 6}, {3, 7}}}
	tests := map[string]struct {
		node      Node
		req       int64
		pods      int
		exclusive bool
		want      Fence
		cause     DemotionCause
	}{
		"no critical pods":            {node: Node{CPUs: 8}, want: Fence{}},
		"rounded up to whole cores":   {node: Node{CPUs: 8}, req: 2500, pods: 3, want: Fence{Cores: 3, CPUs: 3}},
		"two cores cannot fence":      {node: Node{CPUs: 2}, req: 500, pods: 1, cause: DemotionCapacity},
		"no requests":                 {node: Node{CPUs: 8}, pods: 2, cause: DemotionNoRequests},
		"SMT core holds two CPUs":     {node: smt, req: 1500, pods: 1, want: Fence{Cores: 1, CPUs: 2}},
		"SMT exclusive: 1 CPU a core": {node: smt, req: 1500, pods: 1, exclusive: true, want: Fence{Cores: 2, CPUs: 4}},
		"more than the node spares":   {node: Node{CPUs: 4}, req: 3000, pods: 1, cause: DemotionCapacity},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opts := DefaultOptions()
			opts.ExclusiveCores = tc.exclusive
			got, err := CriticalFence(tc.node, tc.req, tc.pods, opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.cause != "" {
				if got.Demotion == nil || got.Demotion.Cause != tc.cause || got.CPUs != 0 {
					t.Fatalf("CriticalFence = %+v, want a %s demotion", got, tc.cause)
				}
				return
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CriticalFence mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := CriticalFence(Node{CPUs: 0}, 1000, 1, DefaultOptions()); err == nil {
		t.Error("CriticalFence accepted a node without CPUs")
	}
}
