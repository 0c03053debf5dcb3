package nodeqosreport

import "testing"

// Issue #18, defect 8: the silent-agent taint has a circuit breaker. When
// more than the threshold share of nodes have silent agents at once (an
// uninstall, a fleet-wide outage), the cause is not the nodes: no node is
// tainted, as the node lifecycle controller stops evicting in a zone in
// full disruption.
func TestBackstopBreaker(t *testing.T) {
	tests := []struct {
		silent, total int
		max           float64
		open          bool
	}{
		{0, 10, 0.55, false},
		{1, 10, 0.55, false},
		{5, 10, 0.55, false},
		{6, 10, 0.55, true},  // more than 55 %: fleet-wide
		{10, 10, 0.55, true}, // an uninstall
		{1, 2, 0.55, false},  // half of a two-node cluster
		{1, 1, 0.55, true},   // the only node: tainting it helps nothing
		{3, 100, 0.02, true}, // a strict setting
		{0, 0, 0.55, false},  // no nodes
		{50, 100, 0, false},  // 0 turns the breaker off
		{100, 100, 1, false}, // 1: never open
	}
	for _, tc := range tests {
		if got := breakerOpen(tc.silent, tc.total, tc.max); got != tc.open {
			t.Errorf("breakerOpen(%d silent of %d, max %.2f) = %v, want %v", tc.silent, tc.total, tc.max, got, tc.open)
		}
	}
}
