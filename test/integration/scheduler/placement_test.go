package scheduler

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
)

// The nodes of these tests have no real pods unless a test adds them, so
// kube-scheduler's default score plugins rate them alike and the placement
// shows InferaDensity's rules (DESIGN.md §2, docs/scheduler.md).

func TestCriticalPrefersFenceHeadroomAndLowProtectedLoad(t *testing.T) {
	const g = "critical"
	makeNode(t, g, "crit-full", 8, fresh(t, 8000, usage{wellknown.TierCritical: {Pods: 3, RequestMilli: 6500}}))
	makeNode(t, g, "crit-busy", 16, fresh(t, 16000, usage{
		wellknown.TierCritical: {Pods: 2, RequestMilli: 4000},
		wellknown.TierHigh:     {Pods: 4, RequestMilli: 8000},
	}))
	makeNode(t, g, "crit-quiet", 16, fresh(t, 16000, nil))
	if got := place(t, g, "crit-1", wellknown.TierCritical, 1000); got != "crit-quiet" {
		t.Errorf("critical pod landed on %s, want crit-quiet (fence headroom, no protected load)", got)
	}
}

func TestHighAvoidsProtectedLoadNotBatchLoad(t *testing.T) {
	const g = "high"
	makeNode(t, g, "high-protected", 16, fresh(t, 16000, usage{
		wellknown.TierCritical: {Pods: 2, RequestMilli: 4000},
		wellknown.TierHigh:     {Pods: 8, RequestMilli: 8000},
	}))
	makeNode(t, g, "high-critical", 16, fresh(t, 16000, usage{wellknown.TierCritical: {Pods: 1, RequestMilli: 2000}}))
	// Busy with batch work only: under Temper that does not contend with a
	// high pod, so it is the best place for one.
	makeNode(t, g, "high-batch", 16, fresh(t, 16000, usage{wellknown.TierNormal: {Pods: 12, RequestMilli: 12000}}))
	if got := place(t, g, "high-1", wellknown.TierHigh, 1000); got != "high-batch" {
		t.Errorf("high pod landed on %s, want high-batch (least protected load)", got)
	}
}

func TestBatchTiersFillTheFullestNodeWithHeadroom(t *testing.T) {
	const g = "batch"
	makeNode(t, g, "batch-empty", 16, fresh(t, 16000, nil))
	makeNode(t, g, "batch-half", 16, fresh(t, 16000, usage{wellknown.TierNormal: {Pods: 8, RequestMilli: 8000}}))
	makeNode(t, g, "batch-full", 16, fresh(t, 16000, usage{wellknown.TierLow: {Pods: 15, RequestMilli: 15500}}))
	for _, tier := range []wellknown.Tier{wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground} {
		if got := place(t, g, "batch-"+string(tier), tier, 1000); got != "batch-half" {
			t.Errorf("%s pod landed on %s, want batch-half (fullest node with idle headroom)", tier, got)
		}
	}
}

// TestCriticalFilteredUntilFenceCapacityFrees: a critical pod that cannot be
// fenced on the only node waits, unschedulable, and lands as soon as the
// agent reports room; a high pod of the same size is never filtered.
func TestCriticalFilteredUntilFenceCapacityFrees(t *testing.T) {
	const g = "fence"
	// 8 cores, 2 reserved (system + shared core): 6 fenceable; 7 already
	// needed by the critical pods the agent reports.
	makeNode(t, g, "fence-full", 8, fresh(t, 8000, usage{wellknown.TierCritical: {Pods: 3, RequestMilli: 6500}}))
	crit := makePod(t, g, "fence-crit", wellknown.TierCritical, 2000, inferaProfile, "")
	msg := waitUnschedulable(t, crit, "critical tier would need 9 whole cores, node can fence 6")
	t.Logf("scheduler said: %s", msg)

	if got := place(t, g, "fence-high", wellknown.TierHigh, 2000); got != "fence-full" {
		t.Errorf("high pod landed on %s, want fence-full", got)
	}

	// The agent reports two critical pods gone: 2 cores fenced, 4 free.
	setAnnotation(t, "fence-full", fresh(t, 8000, usage{wellknown.TierCritical: {Pods: 1, RequestMilli: 2000}}))
	if got := waitBound(t, crit); got != "fence-full" {
		t.Errorf("critical pod landed on %s after room freed, want fence-full", got)
	}
}

// TestStaleAnnotationChangesNothing: annotations older than 180 s are
// ignored, so placement is stock. For a pod of each tier, the infera
// profile picks the node the stock profile picks: the node with the least
// real load, although its stale annotation says its fence is full (were
// the annotation believed, the critical pod would be filtered off it and
// the high pod would avoid it).
func TestStaleAnnotationChangesNothing(t *testing.T) {
	const g = "stale"
	old := time.Now().Add(-wellknown.TierLoadMaxAge - time.Minute)
	makeNode(t, g, "stale-claims-full", 16, tierLoad(t, old, 16000, usage{wellknown.TierCritical: {Pods: 5, RequestMilli: 14500}}))
	makeNode(t, g, "stale-claims-empty", 16, tierLoad(t, old, 16000, nil))
	// Real load on the node the stale annotation calls empty.
	waitBound(t, makePod(t, g, "stale-resident", wellknown.TierNormal, 8000, "", "stale-claims-empty"))

	for _, tier := range wellknown.WorkloadTiers() {
		landed := map[string]string{}
		for _, profile := range []string{"default-scheduler", inferaProfile} {
			p := makePod(t, g, "stale-"+string(tier)+"-"+profile, tier, 2000, profile, "")
			landed[profile] = waitBound(t, p)
			// Free the node again so every pod sees the same cluster.
			if err := env.Client.Delete(context.Background(), p, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			waitGone(t, p)
		}
		if landed[inferaProfile] != landed["default-scheduler"] || landed[inferaProfile] != "stale-claims-full" {
			t.Errorf("%s pod: stock profile chose %s, infera profile %s; want both stale-claims-full", tier, landed["default-scheduler"], landed[inferaProfile])
		}
	}
}

// TestMalformedAnnotationIsNeutralAndLoggedOnce: a node whose annotation
// is malformed (or missing) is never filtered and sits in the middle of
// the nodes the plugin can judge: below a good node, tied with a poor one
// (so the default plugins decide). Each malformed annotation is logged
// once, however many cycles see it.
func TestMalformedAnnotationIsNeutralAndLoggedOnce(t *testing.T) {
	const g, msg = "malformed", "Ignoring malformed tier-load annotation"
	makeNode(t, g, "mal-a", 16, "not json")
	makeNode(t, g, "mal-b", 16, `{"v":1,"ts":"yesterday"}`)
	makeNode(t, g, "mal-missing", 16, noAnnotation)
	makeNode(t, g, "mal-good", 16, fresh(t, 16000, nil))
	poor := usage{wellknown.TierCritical: {Pods: 2, RequestMilli: 4000}, wellknown.TierHigh: {Pods: 10, RequestMilli: 10000}}
	makeNode(t, g, "mal-poor", 16, fresh(t, 16000, poor))
	// Real load that makes the default plugins prefer every other node.
	waitBound(t, makePod(t, g, "mal-poor-resident", wellknown.TierNormal, 2000, "", "mal-poor"))

	// High pod: good 97, poor 13; the unjudged nodes get the median, 55.
	if got := place(t, g, "mal-high-0", wellknown.TierHigh, 500); got != "mal-good" {
		t.Errorf("high pod landed on %s, want mal-good (a good fresh node beats neutral)", got)
	}
	cordon(t, "mal-good")
	// Now poor is the only judged node: the unjudged tie with it and the
	// default plugins send the pod away from poor's real load. Had the
	// malformed annotations scored below neutral, poor would win.
	for i := 1; i <= 4; i++ {
		if got := place(t, g, fmt.Sprintf("mal-high-%d", i), wellknown.TierHigh, 500); got == "mal-poor" {
			t.Errorf("high pod %d landed on mal-poor, want a node without a usable annotation", i)
		}
	}
	// A critical pod far larger than any fence is not filtered by a
	// malformed or missing annotation.
	if got := place(t, g, "mal-crit", wellknown.TierCritical, 15500); got == "mal-poor" {
		t.Errorf("critical pod landed on mal-poor, whose fresh annotation cannot fence it")
	}

	for _, node := range []string{"mal-a", "mal-b"} {
		if lines := logs.matching(msg, `"name"="`+node+`"`); len(lines) != 1 {
			t.Errorf("malformed annotation of %s logged %d times, want once:\n%s", node, len(lines), strings.Join(lines, "\n"))
		}
	}
	if lines := logs.matching(msg, `"name"="mal-missing"`); len(lines) != 0 {
		t.Errorf("missing annotation logged as malformed:\n%s", strings.Join(lines, "\n"))
	}
}

// TestDeployManifestsApply renders config/scheduler/deploy with kubectl's
// kustomize and has the API server validate every object (server-side dry
// run), so the shipped RBAC and Deployment are at least well-formed.
func TestDeployManifestsApply(t *testing.T) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infera-system"}}
	if err := env.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	out, err := env.Kubectl(ctx, "apply", "--dry-run=server", "-k", filepath.Join(env.Root, "config", "scheduler", "deploy"))
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server -k config/scheduler/deploy: %v", err)
	}
	for _, want := range []string{"deployment.apps/infera-scheduler", "configmap/infera-scheduler-config-", "clusterrolebinding.rbac.authorization.k8s.io/infera-scheduler-as-kube-scheduler"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
}
