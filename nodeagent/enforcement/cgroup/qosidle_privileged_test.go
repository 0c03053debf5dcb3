package cgroup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// TestPrivilegedBestEffortIdle writes cpu.idle on the besteffort QoS
// cgroup of a kubelet-shaped tree in this machine's v1 hierarchy while
// every BestEffort pod is background, lets it go (the weight back to the
// kubelet's 2, which the kernel had reset) when a normal BestEffort pod
// arrives, and leaves the tree byte for byte as found on StandDown.
func TestPrivilegedBestEffortIdle(t *testing.T) {
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
	qos := filepath.Join(cpuH, kp, "besteffort")
	if !fileExists(filepath.Join(qos, "cpu.idle")) {
		t.Skip("no cpu.idle on this kernel")
	}
	// The kubelet's value for the besteffort QoS cgroup.
	if err := os.WriteFile(filepath.Join(qos, "cpu.shares"), []byte("2"), 0); err != nil {
		t.Fatal(err)
	}
	l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{KubepodsDir: kp})
	if err != nil {
		t.Fatal(err)
	}
	var pods []Pod
	for i, tier := range []wellknown.Tier{wellknown.TierBackground, wellknown.TierNormal} {
		uid := "00000000-0000-4000-8000-0000000000b" + string(rune('1'+i))
		rel, err := l.PodRelPath(uid, corev1.PodQOSBestEffort)
		if err != nil {
			t.Fatal(err)
		}
		sb.Mkdir(filepath.Join(cpuH, rel), false)
		sb.Mkdir(filepath.Join(cpuH, rel, "c"), false)
		sb.Start(filepath.Join(cpuH, rel, "c"))
		found, err := l.FindPod(cgroupfs.PodRef{UID: uid, QOSClass: corev1.PodQOSBestEffort, ContainerIDs: []string{"containerd://c"}})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, Pod{Name: "ns/" + string(tier), Tier: tier, Cgroup: found})
	}
	before := hostcg.ConfigSnapshot(t, sb.Created())
	w, err := writer.New(writer.Options{Root: root, StateDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := New(Options{Layout: l, Writer: w, CPUManagerStateFile: filepath.Join(t.TempDir(), "absent"), Log: testr.New(t),
		Levers: Levers{CriticalSlice: -1, BestEffortIdle: SwitchOn}})
	if err != nil {
		t.Fatal(err)
	}
	read := func() (idle, shares string) {
		return hostcg.ReadTrimmed(t, filepath.Join(qos, "cpu.idle")), hostcg.ReadTrimmed(t, filepath.Join(qos, "cpu.shares"))
	}
	if _, err := b.Apply(Plan{Pods: pods[:1]}); err != nil {
		t.Fatal(err)
	}
	if idle, shares := read(); idle != "1" || shares != "3" {
		t.Errorf("only background BestEffort pods: besteffort cpu.idle %s, cpu.shares %s; want 1, 3", idle, shares)
	}
	rep, err := b.Apply(Plan{Pods: pods})
	if err != nil {
		t.Fatal(err)
	}
	if idle, shares := read(); idle != "0" || shares != "2" {
		t.Errorf("a normal BestEffort pod too: besteffort cpu.idle %s, cpu.shares %s; want 0, 2 (notes %v)", idle, shares, rep.Notes)
	}
	if _, err := b.Apply(Plan{Pods: pods[:1]}); err != nil {
		t.Fatal(err)
	}
	if idle, _ := read(); idle != "1" {
		t.Errorf("background only again: besteffort cpu.idle %s, want 1", idle)
	}
	if _, err := b.StandDown(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, hostcg.ConfigSnapshot(t, sb.Created())); diff != "" {
		t.Errorf("configuration after StandDown() differs (-before +after):\n%s", diff)
	}
}
