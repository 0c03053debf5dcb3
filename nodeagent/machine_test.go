package nodeagent

import "testing"

func TestMachineThreadsPerCore(t *testing.T) {
	tests := map[string]struct {
		m    Machine
		want int
	}{
		"unknown shape": {Machine{}, 0},
		"no SMT":        {Machine{CPUs: []int{0, 1}, Cores: [][]int{{0}, {1}}}, 0},
		"two threads":   {Machine{CPUs: []int{0, 1, 2, 3}, Cores: [][]int{{0, 2}, {1, 3}}}, 2},
		// scx_layered's unit is the core holding CPU 0.
		"mixed cores": {Machine{CPUs: []int{0, 1, 2}, Cores: [][]int{{0, 1}, {2}}}, 2},
	}
	for name, tc := range tests {
		if got := threadsPerCore(tc.m); got != tc.want {
			t.Errorf("%s: threadsPerCore() = %d, want %d", name, got, tc.want)
		}
	}
}
