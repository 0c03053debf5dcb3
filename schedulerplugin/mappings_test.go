package schedulerplugin

import (
	"context"
	"testing"
	"time"

	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// TestPreFilterUsesTheMappingIndex: once the node handler has seen the
// initial list, PreFilter decides from the indexed mappings (kept by node
// events), not from the nodes it is given; before that it scans them.
func TestPreFilterUsesTheMappingIndex(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	synced := false
	pl.mappings = newMappingIndex()
	pl.mappings.synced = func() bool { return synced }
	lowered := tiering.NodeMapping{Policy: "gpu", Thresholds: tiering.Thresholds{Critical: 500_000, High: 50_000, Normal: 0, Low: -100}}.Marshal()
	mapped := withMapping(nodeInfo("mapped", 8000, tierLoad(t, t0, 8000, nil)), lowered)
	plain := nodeInfo("plain", 8000, tierLoad(t, t0, 8000, nil))

	// Priority 600000: high by default, critical under the mapping.
	pod := makePod("p", wellknown.TierHigh, 2000, time.Time{})
	prio := int32(600_000)
	pod.Spec.Priority, pod.Spec.PriorityClassName = &prio, "custom"
	skips := func(nodes ...fwk.NodeInfo) bool {
		_, st := pl.PreFilter(context.Background(), framework.NewCycleState(), pod, nodes)
		return st.IsSkip()
	}

	if skips(mapped) {
		t.Error("before the index synced, PreFilter skipped although a given node maps the pod critical")
	}
	synced = true
	if !skips(mapped) {
		t.Error("with an empty synced index, PreFilter did not skip")
	}
	pl.mappings.update("mapped", mapped.Node())
	pl.mappings.update("plain", plain.Node())
	if skips(plain) {
		t.Error("PreFilter skipped although an indexed node maps the pod critical")
	}
	// A malformed value is ignored, as on the node itself.
	bad := withMapping(nodeInfo("bad", 8000, tierLoad(t, t0, 8000, nil)), "{")
	pl.mappings.update("bad", bad.Node())
	pl.mappings.update("mapped", nil)
	if !skips(mapped) {
		t.Error("PreFilter did not skip after the mapped node was deleted")
	}
	if got, _ := pl.mappings.values(); len(got) != 0 {
		t.Errorf("index values = %v, want none (the plain node has no mapping, bad's does not parse)", got)
	}
}
