package inferactl

import (
	"bytes"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/printers"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// TestPodsTableAgentColumns: -o wide shows what the node's agent reported
// of each pod (through the gateway), and <none> where it reported nothing.
func TestPodsTableAgentColumns(t *testing.T) {
	rows := []podRow{
		{node: "n1", pod: &inferav1.ClusterPod{Namespace: "a", Name: "enf", Tier: "high", AgentTier: "high",
			Enforcement: inferav1.EnforcementState_ENFORCEMENT_STATE_ENFORCED}},
		{node: "n1", pod: &inferav1.ClusterPod{Namespace: "a", Name: "obs", Tier: "normal", AgentTier: "normal",
			Enforcement: inferav1.EnforcementState_ENFORCEMENT_STATE_SKIPPED, EnforcementReason: "observe-only"}},
		{node: "n2", pod: &inferav1.ClusterPod{Namespace: "a", Name: "unreached", Tier: "low"}},
	}
	var wide, narrow bytes.Buffer
	if err := printers.NewTablePrinter(printers.PrintOptions{Wide: true}).PrintObj(podsTable(rows), &wide); err != nil {
		t.Fatal(err)
	}
	if err := printers.NewTablePrinter(printers.PrintOptions{}).PrintObj(podsTable(rows), &narrow); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(wide.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("wide table has %d lines, want 4:\n%s", len(lines), wide.String())
	}
	for i, want := range [][]string{
		{"AGENT-TIER", "ENFORCEMENT"},
		{"enf", "high", "enforced"},
		{"obs", "normal", "skipped (observe-only)"},
		{"unreached", "<none>   <none>"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("wide line %d = %q, want %q in it", i, lines[i], w)
			}
		}
	}
	if strings.Contains(narrow.String(), "AGENT-TIER") || strings.Contains(narrow.String(), "enforced") {
		t.Errorf("the agent columns show without -o wide:\n%s", narrow.String())
	}
}
