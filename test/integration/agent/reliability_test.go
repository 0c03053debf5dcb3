package agent

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
)

// chattr sets or clears the immutable attribute: even root cannot write an
// immutable file, which makes a restore fail on a real filesystem.
func chattr(t *testing.T, flag, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", flag, path).CombinedOutput(); err != nil {
		t.Skipf("chattr %s %s: %v: %s (needs root and a filesystem with the immutable attribute)", flag, path, err, out)
	}
}

func readyz(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Issue #18, defect 1: a stand-down that cannot restore a value is not
// reported as safe mode: agent-status says degraded with the reason,
// /readyz answers 503, and the agent retries until the stand-down is
// complete.
func TestAgentFailedStandDownIsDegradedAndRetried(t *testing.T) {
	r := newRigWith(t, "agent-node-standdown", 100*time.Millisecond, rigOptions{noSchedExt: true})
	specs := []podSpec{{name: "critical-0", class: "infera-critical", cpu: "1", mem: "64Mi", limitCPU: "=", want: wellknown.TierCritical}}
	r.createPods(specs)
	pods := r.assignedCgroups(1)
	dir := pods["critical-0"].Cgroup.Dirs[cgroupfs.CPU]
	waitFile(t, dir, "cpu.weight", "156")

	weight := filepath.Join(dir, "cpu.weight")
	chattr(t, "+i", weight)
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", weight).Run() })

	r.setSafeMode(true)
	status, _ := r.waitAnnotations("degraded stand-down", func(s string, _ wellknown.TierLoad) bool {
		return strings.HasPrefix(s, wellknown.AgentStatusDegradedPrefix)
	})
	if !strings.Contains(status, "stand-down incomplete: failed to restore") {
		t.Errorf("agent-status %q does not say the stand-down is incomplete", status)
	}
	if code := readyz(t, r.agent.HTTPAddress()); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz during a failed stand-down = %d, want 503", code)
	}

	// The file becomes writable again: the retry completes the stand-down.
	chattr(t, "-i", weight)
	r.waitAnnotations("safe mode after the retry", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	waitFile(t, dir, "cpu.weight", "39")
	if code := readyz(t, r.agent.HTTPAddress()); code != http.StatusOK {
		t.Errorf("/readyz after the stand-down completed = %d, want 200", code)
	}
}

// Issue #18, defect 5: a misspelt yes stands the node down (never silently
// keeps enforcing) and the agent reports the unreadable value with a
// Warning Event on the Node.
func TestAgentSafeModeSpellings(t *testing.T) {
	r := newRigWith(t, "agent-node-spellings", 100*time.Millisecond, rigOptions{noSchedExt: true})
	r.waitAnnotations("enforcing", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingCgroup })
	set := func(v string) {
		t.Helper()
		var n corev1.Node
		must(t, env.Client.Get(context.Background(), types.NamespacedName{Name: r.node}, &n))
		patch := client.MergeFrom(n.DeepCopy())
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[wellknown.SafeModeRequestedAnnotation] = v
		must(t, env.Client.Patch(context.Background(), &n, patch))
	}
	for _, tc := range []struct {
		value string
		safe  bool
	}{{"True", true}, {"no", false}, {"YES", true}, {"0", false}, {"ture", true}} {
		set(tc.value)
		want := wellknown.AgentStatusEnforcingCgroup
		if tc.safe {
			want = wellknown.AgentStatusSafeMode
		}
		r.waitAnnotations("status for "+tc.value, func(s string, _ wellknown.TierLoad) bool { return s == want })
	}
	// The typo is reported on the Node.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var evs corev1.EventList
		must(t, env.Client.List(context.Background(), &evs, client.InNamespace(metav1.NamespaceDefault)))
		found := false
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == r.node && e.Reason == "UnreadableSafeModeValue" &&
				strings.Contains(e.Message, `"ture"`) && e.Type == corev1.EventTypeWarning {
				found = true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no Warning Event UnreadableSafeModeValue naming \"ture\" on the Node")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
