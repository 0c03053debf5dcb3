package cgroup

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// TestPrivilegedSuppressV1 runs dynamic CPU suppression on this machine's
// cgroup v1 hierarchy: a busy critical pod (its use read from its threads'
// schedstat) makes the busy background pods' CFS quota shrink in bounded
// steps down to the floor, a container limit above the new quota is capped
// first (v1 refuses a parent quota below a child's), and StandDown leaves the tree byte for byte as found.
func TestPrivilegedSuppressV1(t *testing.T) {
	hostcg.RequireRoot(t)
	const root = "/sys/fs/cgroup"
	if v, err := cgroupfs.DetectVersion(root); err != nil || v != cgroupfs.V1 {
		t.Skipf("%s is not cgroup v1 here (%v, %v)", root, v, err)
	}
	host, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatal(err)
	}
	cpuH := host.Hierarchies[cgroupfs.CPU]
	name := hostcg.RandomName(t)
	kp := name + "/kubepods"
	sb := hostcg.New(t)
	for _, rel := range []string{name, kp, kp + "/burstable", kp + "/besteffort"} {
		sb.Mkdir(filepath.Join(cpuH, rel), false)
	}
	l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{KubepodsDir: kp})
	if err != nil {
		t.Fatal(err)
	}
	specs := []struct {
		tier     wellknown.Tier
		qos      corev1.PodQOSClass
		uid      string
		ctrQuota string // the container's limit, as the runtime wrote it
	}{
		{wellknown.TierCritical, corev1.PodQOSGuaranteed, "00000000-0000-4000-8000-0000000000c1", "100000"},
		{wellknown.TierBackground, corev1.PodQOSBurstable, "00000000-0000-4000-8000-0000000000c2", "150000"},
		{wellknown.TierBackground, corev1.PodQOSBestEffort, "00000000-0000-4000-8000-0000000000c3", "-1"},
	}
	var pods []Pod
	for _, s := range specs {
		rel, err := l.PodRelPath(s.uid, s.qos)
		if err != nil {
			t.Fatal(err)
		}
		sb.Mkdir(filepath.Join(cpuH, rel), false)
		sb.Mkdir(filepath.Join(cpuH, rel, "c"), false)
		if err := os.WriteFile(filepath.Join(cpuH, rel, "c", "cpu.cfs_quota_us"), []byte(s.ctrQuota), 0); err != nil {
			t.Fatal(err)
		}
		sb.StartBusy(filepath.Join(cpuH, rel, "c"))
		found, err := l.FindPod(cgroupfs.PodRef{UID: s.uid, QOSClass: s.qos, ContainerIDs: []string{"containerd://c"}})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, Pod{Name: "ns/" + s.uid[len(s.uid)-2:], Tier: s.tier, Cgroup: found})
	}
	before := hostcg.ConfigSnapshot(t, sb.Created())
	w, err := writer.New(writer.Options{Root: root, StateDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A 1000m step and 300m headroom reach the target on the second tick.
	b, err := New(Options{Layout: l, Writer: w, CPUManagerStateFile: filepath.Join(t.TempDir(), "absent"), Log: testr.New(t),
		Levers: Levers{CriticalSlice: -1, Suppress: SwitchOn, SuppressStepMilli: 1000, SuppressHeadroomMilli: 300}})
	if err != nil {
		t.Fatal(err)
	}
	// A node of 0.4 CPU: the target (400 − the critical use − 300) is
	// below the floor (2 × 100m) whatever the shared machine's load lets
	// the critical pod use, so the budget is exactly the floor.
	const capacity = 400
	if _, err := b.Apply(Plan{Pods: pods, CapacityMilli: capacity}); err != nil {
		t.Fatal(err)
	}
	var s Suppression
	for i := range 3 {
		if s, err = b.Suppress(time.Now()); err != nil {
			t.Fatal(err)
		}
		t.Logf("tick %d: %+v", i, s)
		time.Sleep(time.Second)
	}
	if !s.Active || s.BudgetMilli != 200 || s.Pods != 2 || s.ProtectedMilli <= 0 {
		t.Fatalf("suppression = %+v; want active, the 200m floor, 2 pods, protected use seen", s)
	}
	per := s.BudgetMilli / 2 * 100 // µs per 100 ms period
	for _, p := range pods[1:] {
		d := p.Cgroup.Dirs[cgroupfs.CPU]
		podQ := hostcg.ReadTrimmed(t, filepath.Join(d, "cpu.cfs_quota_us"))
		ctrQ := hostcg.ReadTrimmed(t, filepath.Join(d, "c", "cpu.cfs_quota_us"))
		if podQ != strconv.FormatInt(per, 10) {
			t.Errorf("%s: pod cpu.cfs_quota_us %s, want %d", p.Name, podQ, per)
		}
		if q, _ := strconv.ParseInt(ctrQ, 10, 64); q > per {
			t.Errorf("%s: container cpu.cfs_quota_us %s above the pod's %d", p.Name, ctrQ, per)
		}
	}
	// Throttling depends on the CPU the shared machine leaves the pods:
	// logged, not asserted.
	time.Sleep(500 * time.Millisecond)
	for _, p := range pods[1:] {
		t.Logf("%s cpu.stat: %q", p.Name, hostcg.ReadTrimmed(t, filepath.Join(p.Cgroup.Dirs[cgroupfs.CPU], "cpu.stat")))
	}
	if _, err := b.StandDown(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, hostcg.ConfigSnapshot(t, sb.Created())); diff != "" {
		t.Errorf("configuration after StandDown() differs (-before +after):\n%s", diff)
	}
}
