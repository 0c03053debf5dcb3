package layered

import "testing"

// BenchmarkGenerate250 is config generation for a full node (250 pods,
// 64 CPUs with SMT), the work the agent does after every coalesced burst
// of pod events:
//
//	go test ./nodeagent/scx -run '^$' -bench Generate250 -benchmem
func BenchmarkGenerate250(b *testing.B) {
	node, pods, opts := Node{CPUs: 64, Cores: smtCores(64)}, pods250(), DefaultOptions()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Generate(node, pods, opts); err != nil {
			b.Fatal(err)
		}
	}
}
