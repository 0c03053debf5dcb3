package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infera-io/temper/nodeagent/cpuset"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// node is a faked node with one pod per tier.
type node struct {
	t      *testing.T
	tree   *cgrouptest.Tree
	layout *cgroupfs.Layout
	w      *writer.Writer
	b      *Backend
	pods   map[wellknown.Tier]Pod
	// rel is each tier's pod cgroup, relative to the hierarchy roots.
	rel map[wellknown.Tier]string
	// stateDir and bootFile are the writer's, for a restarted agent.
	stateDir, bootFile, cpuManagerStateFile string
}

var tierPods = []struct {
	tier wellknown.Tier
	uid  string
	qos  corev1.PodQOSClass
}{
	{wellknown.TierSystem, "00000000-0000-4000-8000-000000000001", corev1.PodQOSBurstable},
	{wellknown.TierCritical, "00000000-0000-4000-8000-000000000002", corev1.PodQOSGuaranteed},
	{wellknown.TierHigh, "00000000-0000-4000-8000-000000000003", corev1.PodQOSBurstable},
	{wellknown.TierNormal, "00000000-0000-4000-8000-000000000004", corev1.PodQOSBurstable},
	{wellknown.TierLow, "00000000-0000-4000-8000-000000000005", corev1.PodQOSBurstable},
	{wellknown.TierBackground, "00000000-0000-4000-8000-000000000006", corev1.PodQOSBestEffort},
}

func newNode(t *testing.T, v cgroupfs.Version, o cgrouptest.Options, cpuManagerState string) *node {
	t.Helper()
	var tr *cgrouptest.Tree
	if v == cgroupfs.V1 {
		tr = cgrouptest.NewV1(t, o)
	} else {
		tr = cgrouptest.NewV2(t, o)
	}
	tr.Kubelet(t, cgroupfs.DriverCgroupfs)
	n := &node{t: t, tree: tr, pods: map[wellknown.Tier]Pod{}, rel: map[wellknown.Tier]string{}}
	for i, tp := range tierPods {
		p := tr.AddPod(t, cgroupfs.DriverCgroupfs, tp.uid, tp.qos, cgroupfs.RuntimeContainerd, strings.Repeat(string(rune('a'+i)), 64))
		n.rel[tp.tier] = p.RelPath
	}
	var err error
	if n.layout, err = cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	boot := filepath.Join(dir, "boot_id")
	if err := os.WriteFile(boot, []byte("b1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.stateDir, n.bootFile = filepath.Join(dir, "state"), boot
	if n.w, err = writer.New(writer.Options{Root: tr.Root, StateDir: n.stateDir, BootIDFile: boot, Log: testr.New(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.w.Close() })
	stateFile := filepath.Join(dir, "cpu_manager_state")
	n.cpuManagerStateFile = stateFile
	if cpuManagerState != "" {
		if err := os.WriteFile(stateFile, []byte(cpuManagerState), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if n.b, err = New(Options{Layout: n.layout, Writer: n.w, CPUManagerStateFile: stateFile, Log: testr.New(t)}); err != nil {
		t.Fatal(err)
	}
	n.find()
	return n
}

// find looks every pod up, as the agent does before each Apply.
func (n *node) find() {
	n.t.Helper()
	for i, tp := range tierPods {
		got, err := n.layout.FindPod(cgroupfs.PodRef{UID: tp.uid, QOSClass: tp.qos, ContainerIDs: []string{"containerd://" + strings.Repeat(string(rune('a'+i)), 64)}})
		if err != nil {
			n.t.Fatal(err)
		}
		n.pods[tp.tier] = Pod{Name: "ns/" + string(tp.tier), Tier: tp.tier, Cgroup: got}
	}
}

func (n *node) all() []Pod {
	var out []Pod
	for _, tp := range tierPods {
		out = append(out, n.pods[tp.tier])
	}
	return out
}

func (n *node) read(c cgroupfs.Controller, rel, file string) string {
	n.t.Helper()
	b, err := os.ReadFile(n.tree.Path(c, rel, file))
	if err != nil {
		n.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestTierLevers(t *testing.T) {
	for _, v := range []cgroupfs.Version{cgroupfs.V1, cgroupfs.V2} {
		t.Run(v.String(), func(t *testing.T) {
			n := newNode(t, v, cgrouptest.Options{}, "")
			qosBefore := cgrouptest.Snapshot(t, n.tree.Root)
			rep, err := n.b.Apply(Plan{Pods: n.all()})
			if err != nil {
				t.Fatalf("Apply() error = %v", err)
			}
			if rep.Enforced != len(tierPods) || !rep.Changed {
				t.Errorf("Apply() = %+v, want all %d pods enforced and a change", rep, len(tierPods))
			}
			// The kubelet's pod weights (cgrouptest): Guaranteed 1024/39,
			// Burstable 512/20, BestEffort 2/1.
			weight := "cpu.shares"
			want := map[wellknown.Tier]string{
				wellknown.TierSystem: "512", wellknown.TierCritical: "4096", wellknown.TierHigh: "1024",
				wellknown.TierNormal: "512", wellknown.TierLow: "128", wellknown.TierBackground: "2",
			}
			if v == cgroupfs.V2 {
				weight = "cpu.weight"
				want = map[wellknown.Tier]string{
					wellknown.TierSystem: "20", wellknown.TierCritical: "156", wellknown.TierHigh: "40",
					wellknown.TierNormal: "20", wellknown.TierLow: "5", wellknown.TierBackground: "1",
				}
			}
			got := map[wellknown.Tier]string{}
			idle := map[wellknown.Tier]string{}
			for _, tp := range tierPods {
				got[tp.tier] = n.read(cgroupfs.CPU, n.rel[tp.tier], weight)
				idle[tp.tier] = n.read(cgroupfs.CPU, n.rel[tp.tier], "cpu.idle")
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s per tier mismatch (-want +got):\n%s", weight, diff)
			}
			wantIdle := map[wellknown.Tier]string{
				wellknown.TierSystem: "0", wellknown.TierCritical: "0", wellknown.TierHigh: "0",
				wellknown.TierNormal: "0", wellknown.TierLow: "0", wellknown.TierBackground: "1",
			}
			if diff := cmp.Diff(wantIdle, idle); diff != "" {
				t.Errorf("cpu.idle per tier mismatch (-want +got):\n%s", diff)
			}
			// The kubelet's QoS-level cgroups are untouched.
			after := cgrouptest.Snapshot(t, n.tree.Root)
			for k, v := range qosBefore {
				if strings.Contains(k, "/pod") {
					continue
				}
				if after[k] != v {
					t.Errorf("%s changed from %q to %q; QoS-level cgroups belong to the kubelet", k, v, after[k])
				}
			}

			// Applying again changes nothing: derived weights do not compound.
			writes := n.w.Stats().Writes
			if rep, err := n.b.Apply(Plan{Pods: n.all()}); err != nil || rep.Changed {
				t.Errorf("second Apply() = %+v, %v; want no change", rep, err)
			}
			if got := n.w.Stats().Writes; got != writes {
				t.Errorf("second Apply() wrote %d files", got-writes)
			}
		})
	}
}

func TestBackgroundWithoutCPUIdle(t *testing.T) {
	n := newNode(t, cgroupfs.V1, cgrouptest.Options{Omit: []string{"cpu.idle"}}, "")
	rep, err := n.b.Apply(Plan{Pods: []Pod{n.pods[wellknown.TierBackground], n.pods[wellknown.TierLow]}})
	if err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	if got := n.read(cgroupfs.CPU, n.rel[wellknown.TierBackground], "cpu.shares"); got != "2" {
		t.Errorf("background cpu.shares = %s, want the minimal 2", got)
	}
	if len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "no cpu.idle for ns/background") {
		t.Errorf("Notes = %q, want one naming the pod without cpu.idle", rep.Notes)
	}
}

func TestFence(t *testing.T) {
	for _, v := range []cgroupfs.Version{cgroupfs.V1, cgroupfs.V2} {
		t.Run(v.String(), func(t *testing.T) {
			n := newNode(t, v, cgrouptest.Options{CPUs: "0-3"}, `{"policyName":"none","defaultCpuSet":"","checksum":1}`)
			before := cgrouptest.Snapshot(t, n.tree.Root)
			origCPUs := map[wellknown.Tier]string{}
			for _, tp := range tierPods {
				origCPUs[tp.tier] = n.read(cgroupfs.CPUSet, n.rel[tp.tier], "cpuset.cpus")
			}
			rep, err := n.b.Apply(Plan{Pods: n.all(), FenceCPUs: mustSet(t, "3"), NodeCPUs: mustSet(t, "0-3")})
			if err != nil {
				t.Fatalf("Apply() error = %v", err)
			}
			if rep.Fenced.String() != "3" {
				t.Errorf("Fenced = %q, want 3", rep.Fenced)
			}
			for _, tp := range tierPods {
				want := "0-2"
				if tp.tier == wellknown.TierCritical {
					want = "3"
				}
				p := n.pods[tp.tier]
				for _, rel := range []string{p.Cgroup.RelPath, p.Cgroup.Containers[0].RelPath} {
					if got := n.read(cgroupfs.CPUSet, rel, "cpuset.cpus"); got != want {
						t.Errorf("%s cpuset.cpus of %s = %s, want %s", tp.tier, rel, got, want)
					}
				}
			}
			// The fence moves: critical pods widen, the others narrow, in
			// place: no pod is handed back (restored to stock and enforced
			// again) on the way.
			restored := n.w.Stats().Restored
			if _, err := n.b.Apply(Plan{Pods: n.all(), FenceCPUs: mustSet(t, "2-3"), NodeCPUs: mustSet(t, "0-3")}); err != nil {
				t.Fatalf("Apply() with a moved fence error = %v", err)
			}
			if got := n.read(cgroupfs.CPUSet, n.rel[wellknown.TierCritical], "cpuset.cpus"); got != "2-3" {
				t.Errorf("critical cpuset after the move = %s, want 2-3", got)
			}
			if got := n.read(cgroupfs.CPUSet, n.rel[wellknown.TierLow], "cpuset.cpus"); got != "0-1" {
				t.Errorf("low cpuset after the move = %s, want 0-1", got)
			}
			if d := n.w.Stats().Restored - restored; d != 0 {
				t.Errorf("moving the fence restored %d originals; want the pods enforced over in place", d)
			}
			// The fence goes: the cpusets are handed back and no longer
			// asserted; the weights stay enforced.
			weight := "cpu.shares"
			if v == cgroupfs.V2 {
				weight = "cpu.weight"
			}
			critWeight := n.read(cgroupfs.CPU, n.rel[wellknown.TierCritical], weight)
			if _, err := n.b.Apply(Plan{Pods: n.all(), NodeCPUs: mustSet(t, "0-3")}); err != nil {
				t.Fatalf("Apply() without a fence error = %v", err)
			}
			for _, tp := range tierPods {
				if got := n.read(cgroupfs.CPUSet, n.rel[tp.tier], "cpuset.cpus"); got != origCPUs[tp.tier] {
					t.Errorf("%s cpuset.cpus after the fence went = %s, want the original %s", tp.tier, got, origCPUs[tp.tier])
				}
			}
			if got := n.read(cgroupfs.CPU, n.rel[wellknown.TierCritical], weight); got != critWeight {
				t.Errorf("critical weight after the fence went = %s, want it still enforced (%s)", got, critWeight)
			}
			// Stand down: the tree is as found.
			if _, err := n.b.StandDown(); err != nil {
				t.Fatalf("StandDown() error = %v", err)
			}
			if diff := cmp.Diff(before, cgrouptest.Snapshot(t, n.tree.Root)); diff != "" {
				t.Errorf("tree after StandDown() differs (-before +after):\n%s", diff)
			}
		})
	}
}

func TestNoFence(t *testing.T) {
	tests := []struct {
		name, state, fence, node string
		opts                     cgrouptest.Options
		wantNote                 string
	}{
		{"static CPU manager", `{"policyName":"static","defaultCpuSet":"0-3"}`, "3", "0-3", cgrouptest.Options{}, "static CPU manager"},
		{"unreadable CPU manager state", `{"policyName":`, "3", "0-3", cgrouptest.Options{}, "cannot tell"},
		{"no cpuset controller", "", "3", "0-3", cgrouptest.Options{NoCPUSet: true}, "no cpuset controller"},
		{"fence is every CPU", "", "0-3", "0-3", cgrouptest.Options{}, "leaves no CPU"},
		{"fence outside the node", "", "7", "0-3", cgrouptest.Options{}, "not a non-empty subset"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNode(t, cgroupfs.V1, tt.opts, tt.state)
			rep, err := n.b.Apply(Plan{Pods: n.all(), FenceCPUs: mustSet(t, tt.fence), NodeCPUs: mustSet(t, tt.node)})
			if err != nil {
				t.Fatalf("Apply() error = %v", err)
			}
			if len(rep.Fenced) != 0 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], tt.wantNote) {
				t.Errorf("Apply() = %+v, want no fence and a note containing %q", rep, tt.wantNote)
			}
			if h, ok := n.tree.Hierarchies[cgroupfs.CPUSet]; ok {
				for _, o := range n.w.Originals() {
					if strings.HasPrefix(o.Path, h) {
						t.Errorf("a cpuset was written: %s/%s", o.Path, o.File)
					}
				}
			}
			// Weights are still enforced.
			if got := n.read(cgroupfs.CPU, n.rel[wellknown.TierCritical], "cpu.shares"); got != "4096" {
				t.Errorf("critical cpu.shares = %s, want 4096", got)
			}
		})
	}
}

// A pod that changes tier is handed back first; a pod that leaves is
// handed back; pods without a cgroup are pending.
func TestTierChangesAndDepartures(t *testing.T) {
	n := newNode(t, cgroupfs.V1, cgrouptest.Options{}, "")
	bg := n.pods[wellknown.TierBackground]
	low := n.pods[wellknown.TierLow]
	if _, err := n.b.Apply(Plan{Pods: []Pod{bg, low}}); err != nil {
		t.Fatal(err)
	}
	// The background pod is now low: idle off, and its weight derived from
	// the kubelet's 2, not from the idle weight.
	bg.Tier = wellknown.TierLow
	pending := Pod{Name: "ns/new", Tier: wellknown.TierHigh}
	rep, err := n.b.Apply(Plan{Pods: []Pod{bg, pending}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ns/new"}, rep.Pending); diff != "" {
		t.Errorf("Pending mismatch (-want +got):\n%s", diff)
	}
	if got := n.read(cgroupfs.CPU, n.rel[wellknown.TierBackground], "cpu.idle"); got != "0" {
		t.Errorf("former background pod cpu.idle = %s, want 0", got)
	}
	if got := n.read(cgroupfs.CPU, n.rel[wellknown.TierBackground], "cpu.shares"); got != "2" {
		t.Errorf("former background pod cpu.shares = %s, want 2 (2/4 clamped)", got)
	}
	// The low pod left the assignment: handed back.
	if got := n.read(cgroupfs.CPU, n.rel[wellknown.TierLow], "cpu.shares"); got != "512" {
		t.Errorf("departed pod cpu.shares = %s, want the kubelet's 512", got)
	}
	// A pod whose cgroup vanished leaves without an error.
	if err := os.RemoveAll(n.tree.Path(cgroupfs.CPU, n.rel[wellknown.TierBackground], "")); err != nil {
		t.Fatal(err)
	}
	if _, err := n.b.Apply(Plan{}); err != nil {
		t.Errorf("Apply() after the pod's cgroup vanished: error = %v", err)
	}
}

func TestUnknownTierIsAnErrorForThatPodOnly(t *testing.T) {
	n := newNode(t, cgroupfs.V1, cgrouptest.Options{}, "")
	bad := n.pods[wellknown.TierNormal]
	bad.Tier = "platinum"
	rep, err := n.b.Apply(Plan{Pods: []Pod{bad, n.pods[wellknown.TierLow]}})
	if err == nil || !strings.Contains(err.Error(), "ns/normal") {
		t.Errorf("Apply() error = %v, want one naming the pod", err)
	}
	if rep.Enforced != 1 || n.read(cgroupfs.CPU, n.rel[wellknown.TierLow], "cpu.shares") != "128" {
		t.Errorf("Apply() = %+v; the other pod must still be enforced", rep)
	}
}

func TestNewNeedsTheCPUController(t *testing.T) {
	tr := cgrouptest.NewV2(t, cgrouptest.Options{})
	l := &cgroupfs.Layout{Root: tr.Root, Version: cgroupfs.V2, Driver: cgroupfs.DriverSystemd, Hierarchies: map[cgroupfs.Controller]string{}, KubepodsDir: "kubepods.slice"}
	if _, err := New(Options{Layout: l, Writer: &writer.Writer{}}); err == nil || !strings.Contains(err.Error(), "no cpu controller") {
		t.Errorf("New() error = %v, want no cpu controller", err)
	}
	if _, err := New(Options{}); err == nil {
		t.Error("New() without dependencies succeeded")
	}
}

// On v1 a pod moving between disjoint cpusets is first widened to both,
// so neither the containers nor the pod ever leave their parent's cpuset.
func TestFenceTransitionOrderOnV1(t *testing.T) {
	n := newNode(t, cgroupfs.V1, cgrouptest.Options{CPUs: "0-3"}, "")
	crit := n.pods[wellknown.TierCritical]
	n.tree.Set(t, cgroupfs.CPUSet, crit.Cgroup.Containers[0].RelPath, "cpuset.cpus", "0\n")
	n.tree.Set(t, cgroupfs.CPUSet, crit.Cgroup.RelPath, "cpuset.cpus", "0\n")
	if _, err := n.b.Apply(Plan{Pods: []Pod{crit}, FenceCPUs: mustSet(t, "3"), NodeCPUs: mustSet(t, "0-3")}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range n.w.Audit() {
		if r.File == "cpuset.cpus" {
			got = append(got, strings.TrimPrefix(r.Path, n.tree.Hierarchies[cgroupfs.CPUSet]+"/")+": "+r.Old+" → "+r.New)
		}
	}
	want := []string{
		crit.Cgroup.RelPath + ": 0 → 0,3",
		crit.Cgroup.Containers[0].RelPath + ": 0 → 3",
		crit.Cgroup.RelPath + ": 0,3 → 3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cpuset writes mismatch (-want +got):\n%s", diff)
	}
}

func TestCPUList(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""}, {"0", "0"}, {"0-3", "0-3"}, {"3,0,1,2", "0-3"}, {"0-1,3,5-6", "0-1,3,5-6"}, {" 1 ,2\n", "1-2"},
	}
	for _, tt := range tests {
		got, err := cpuset.Parse(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("cpuset.Parse(%q) = %q, %v; want %q", tt.in, got.String(), err, tt.want)
		}
	}
	for _, bad := range []string{"a", "3-1", "-1", "0-999999999"} {
		if _, err := cpuset.Parse(bad); err == nil {
			t.Errorf("cpuset.Parse(%q) succeeded", bad)
		}
	}
}

func mustSet(t *testing.T, s string) cpuset.Set {
	t.Helper()
	set, err := cpuset.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
