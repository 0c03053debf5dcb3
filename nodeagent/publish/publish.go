package publish

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/infera-io/temper/apis/wellknown"
)

// fieldManager names the agent in the Node's managed fields.
const fieldManager = "infera-agent"

// Publisher patches one Node's agent annotations.
type Publisher struct {
	client    kubernetes.Interface
	node      string
	clock     clock.PassiveClock
	heartbeat time.Duration

	mu         sync.Mutex
	last       *wellknown.TierLoad // what the Node carries, as far as we know
	lastStatus string
}

// New returns a Publisher for node. heartbeat is how often an unchanged
// value is re-confirmed.
func New(c kubernetes.Interface, node string, heartbeat time.Duration, clk clock.PassiveClock) *Publisher {
	return &Publisher{client: c, node: node, clock: clk, heartbeat: heartbeat}
}

// Seed takes what the Node already carries, so a restarted agent neither
// repeats a patch nor lets `gen` go backwards. It returns the generation
// found (0 when none or unparseable).
func (p *Publisher) Seed(node *corev1.Node) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if node == nil {
		return 0
	}
	p.lastStatus = node.Annotations[wellknown.AgentStatusAnnotation]
	if v, ok := node.Annotations[wellknown.TierLoadAnnotation]; ok {
		if l, err := wellknown.ParseTierLoad(v); err == nil {
			p.last = &l
			return l.Gen
		}
	}
	return 0
}

// Publish sets status and load on the Node when either differs from what it
// carries, or when the heartbeat is due. load.TS is set here. It reports
// whether it patched.
func (p *Publisher) Publish(ctx context.Context, status string, load wellknown.TierLoad) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if p.last != nil && p.last.SameContent(load) && p.lastStatus == status && now.Sub(p.last.TS) < p.heartbeat {
		return false, nil
	}
	load.TS = now
	v, err := load.Marshal()
	if err != nil {
		return false, fmt.Errorf("failed to render %s for Node %s: %w", wellknown.TierLoadAnnotation, p.node, err)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		wellknown.AgentStatusAnnotation: status,
		wellknown.TierLoadAnnotation:    v,
	}}})
	if err != nil {
		return false, fmt.Errorf("failed to build annotation patch: %w", err)
	}
	if _, err := p.client.CoreV1().Nodes().Patch(ctx, p.node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return false, fmt.Errorf("failed to patch annotations of Node %s: %w", p.node, err)
	}
	parsed, _ := wellknown.ParseTierLoad(v)
	p.last, p.lastStatus = &parsed, status
	return true, nil
}
