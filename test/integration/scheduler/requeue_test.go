package scheduler

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
)

// The requeue tests: a critical pod the plugin filtered must be retried
// within seconds of the change that makes it schedulable, not at
// kube-scheduler's unschedulable-pool flush (5 minutes). Their deadlines
// (waitTimeout, 60 s) are generous for a loaded machine and still fail if
// the pod waits for the flush; they time nothing else.

// critFull is a tier-load whose critical tier fills an 8-core node's six
// fenceable cores.
var critFull = usage{wellknown.TierCritical: {Pods: 3, RequestMilli: 6000}}

// TestRequeueWhenFilteringAnnotationTurnsStale: the agent stops confirming
// the annotation that filtered the pod. No API event follows; the pod must
// still land soon after the annotation turns stale (fail open).
func TestRequeueWhenFilteringAnnotationTurnsStale(t *testing.T) {
	const g = "requeue-stale"
	// Fresh for another 20 s.
	ts := time.Now().Add(-wellknown.TierLoadMaxAge + 20*time.Second)
	makeNode(t, g, "requeue-stale-node", 8, tierLoad(t, ts, 8000, critFull))
	crit := makePod(t, g, "requeue-stale-crit", wellknown.TierCritical, 1000, inferaProfile, "")
	waitUnschedulable(t, crit, "critical tier would need 7 whole cores, node can fence 6")
	start := time.Now()
	if got := waitBound(t, crit); got != "requeue-stale-node" {
		t.Errorf("critical pod landed on %s, want requeue-stale-node", got)
	}
	t.Logf("bound %s after the pod was reported unschedulable", time.Since(start).Round(time.Second))
}

// TestRequeueWhenFencingPodDeleted: the fence is full because of a critical
// pod bound after the agent last wrote; deleting that pod frees it.
func TestRequeueWhenFencingPodDeleted(t *testing.T) {
	const g = "requeue-deleted"
	makeNode(t, g, "requeue-deleted-node", 8, tierLoad(t, time.Now().Add(-5*time.Second), 8000, nil))
	first := makePod(t, g, "requeue-deleted-a", wellknown.TierCritical, 4000, inferaProfile, "")
	waitBound(t, first)
	second := makePod(t, g, "requeue-deleted-b", wellknown.TierCritical, 3000, inferaProfile, "")
	waitUnschedulable(t, second, "critical tier would need 7 whole cores, node can fence 6")
	if err := env.Client.Delete(context.Background(), first, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if got := waitBound(t, second); got != "requeue-deleted-node" {
		t.Errorf("critical pod landed on %s, want requeue-deleted-node", got)
	}
}

// TestRequeueWhenNodeAppears: a node with room joins the pod's pool.
func TestRequeueWhenNodeAppears(t *testing.T) {
	const g = "requeue-new"
	makeNode(t, g, "requeue-new-full", 8, fresh(t, 8000, critFull))
	crit := makePod(t, g, "requeue-new-crit", wellknown.TierCritical, 1000, inferaProfile, "")
	waitUnschedulable(t, crit, "critical tier would need 7 whole cores, node can fence 6")
	makeNode(t, g, "requeue-new-roomy", 8, fresh(t, 8000, nil))
	if got := waitBound(t, crit); got != "requeue-new-roomy" {
		t.Errorf("critical pod landed on %s, want requeue-new-roomy", got)
	}
}
