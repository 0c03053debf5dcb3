package cgroupfs_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// The kubelet's and the runtimes' names, spelled out literally for one pod
// UID per QoS class and one container ID.
const (
	uidG = "1b4e2c9a-7d1f-4c55-9a0e-3f1d2b6c8e70"
	uidB = "7f3a9d12-0c4e-4b8a-b1d2-5e6f7a8b9c0d"
	uidE = "c0ffee00-1234-4abc-8def-0123456789ab"
	cid  = "4f1e6a0c2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
)

var podRel = map[cgroupfs.Driver]map[corev1.PodQOSClass]string{
	cgroupfs.DriverSystemd: {
		corev1.PodQOSGuaranteed: "kubepods.slice/kubepods-pod1b4e2c9a_7d1f_4c55_9a0e_3f1d2b6c8e70.slice",
		corev1.PodQOSBurstable:  "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod7f3a9d12_0c4e_4b8a_b1d2_5e6f7a8b9c0d.slice",
		corev1.PodQOSBestEffort: "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc0ffee00_1234_4abc_8def_0123456789ab.slice",
	},
	cgroupfs.DriverCgroupfs: {
		corev1.PodQOSGuaranteed: "kubepods/pod1b4e2c9a-7d1f-4c55-9a0e-3f1d2b6c8e70",
		corev1.PodQOSBurstable:  "kubepods/burstable/pod7f3a9d12-0c4e-4b8a-b1d2-5e6f7a8b9c0d",
		corev1.PodQOSBestEffort: "kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab",
	},
}

var containerName = map[cgroupfs.Driver]map[cgroupfs.Runtime]string{
	cgroupfs.DriverSystemd: {
		cgroupfs.RuntimeContainerd: "cri-containerd-" + cid + ".scope",
		cgroupfs.RuntimeCRIO:       "crio-" + cid + ".scope",
		cgroupfs.RuntimeDocker:     "docker-" + cid + ".scope",
	},
	cgroupfs.DriverCgroupfs: {
		cgroupfs.RuntimeContainerd: cid,
		cgroupfs.RuntimeCRIO:       "crio-" + cid,
		cgroupfs.RuntimeDocker:     cid,
	},
}

var uidOf = map[corev1.PodQOSClass]string{
	corev1.PodQOSGuaranteed: uidG,
	corev1.PodQOSBurstable:  uidB,
	corev1.PodQOSBestEffort: uidE,
}

var qosClasses = []corev1.PodQOSClass{corev1.PodQOSGuaranteed, corev1.PodQOSBurstable, corev1.PodQOSBestEffort}

func newTree(t *testing.T, v cgroupfs.Version) *cgrouptest.Tree {
	t.Helper()
	if v == cgroupfs.V1 {
		return cgrouptest.NewV1(t, cgrouptest.Options{})
	}
	return cgrouptest.NewV2(t, cgrouptest.Options{})
}

// dirsOf is where a cgroup at rel must be found in each controller.
func dirsOf(tr *cgrouptest.Tree, rel string) map[cgroupfs.Controller]string {
	if tr.Version == cgroupfs.V1 {
		return map[cgroupfs.Controller]string{
			cgroupfs.CPU:    filepath.Join(tr.Root, "cpu,cpuacct", rel),
			cgroupfs.CPUSet: filepath.Join(tr.Root, "cpuset", rel),
		}
	}
	return map[cgroupfs.Controller]string{cgroupfs.CPU: filepath.Join(tr.Root, rel), cgroupfs.CPUSet: filepath.Join(tr.Root, rel)}
}

// TestFindPodMatrix covers every combination of cgroup version, driver,
// runtime and QoS class: the layout is detected from the faked tree alone,
// and each pod and its container are found at the kubelet's and runtime's
// names.
func TestFindPodMatrix(t *testing.T) {
	for _, v := range []cgroupfs.Version{cgroupfs.V1, cgroupfs.V2} {
		for _, d := range []cgroupfs.Driver{cgroupfs.DriverSystemd, cgroupfs.DriverCgroupfs} {
			for _, rt := range []cgroupfs.Runtime{cgroupfs.RuntimeContainerd, cgroupfs.RuntimeCRIO, cgroupfs.RuntimeDocker} {
				t.Run(v.String()+"/"+string(d)+"/"+string(rt), func(t *testing.T) {
					tr := newTree(t, v)
					tr.Kubelet(t, d)
					for _, q := range qosClasses {
						tr.AddPod(t, d, uidOf[q], q, rt, cid)
					}
					l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{})
					if err != nil {
						t.Fatalf("Detect() error = %v", err)
					}
					wantKubepods := map[cgroupfs.Driver]string{cgroupfs.DriverSystemd: "kubepods.slice", cgroupfs.DriverCgroupfs: "kubepods"}[d]
					wantLayout := &cgroupfs.Layout{Root: tr.Root, Version: v, Driver: d, Hierarchies: dirsOf(tr, ""), KubepodsDir: wantKubepods}
					if diff := cmp.Diff(wantLayout, l); diff != "" {
						t.Fatalf("Detect() mismatch (-want +got):\n%s", diff)
					}
					for _, q := range qosClasses {
						t.Run(string(q), func(t *testing.T) {
							id := string(rt) + "://" + cid
							got, err := l.FindPod(cgroupfs.PodRef{UID: uidOf[q], QOSClass: q, ContainerIDs: []string{id}})
							if err != nil {
								t.Fatalf("FindPod() error = %v", err)
							}
							rel := podRel[d][q]
							crel := rel + "/" + containerName[d][rt]
							want := &cgroupfs.Pod{
								UID: uidOf[q], QOSClass: q, RelPath: rel, Dirs: dirsOf(tr, rel),
								Containers: []cgroupfs.Container{{ID: id, Runtime: rt, RelPath: crel, Dirs: dirsOf(tr, crel)}},
							}
							if diff := cmp.Diff(want, got); diff != "" {
								t.Errorf("FindPod() mismatch (-want +got):\n%s", diff)
							}
						})
					}
				})
			}
		}
	}
}

func TestFindPodNotYetThere(t *testing.T) {
	for _, v := range []cgroupfs.Version{cgroupfs.V1, cgroupfs.V2} {
		t.Run(v.String(), func(t *testing.T) {
			tr := newTree(t, v)
			tr.Kubelet(t, cgroupfs.DriverSystemd)
			l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{})
			if err != nil {
				t.Fatalf("Detect() error = %v", err)
			}
			ref := cgroupfs.PodRef{UID: uidB, QOSClass: corev1.PodQOSBurstable, ContainerIDs: []string{"containerd://" + cid}}

			_, err = l.FindPod(ref)
			if !errors.Is(err, cgroupfs.ErrNotFound) {
				t.Fatalf("FindPod() before the kubelet created the pod: error = %v, want ErrNotFound", err)
			}

			// The pod cgroup exists, its container's not yet.
			tr.Mkdir(t, podRel[cgroupfs.DriverSystemd][corev1.PodQOSBurstable])
			got, err := l.FindPod(ref)
			if err != nil {
				t.Fatalf("FindPod() error = %v", err)
			}
			if diff := cmp.Diff([]string{"containerd://" + cid}, got.Pending); diff != "" {
				t.Errorf("Pending mismatch (-want +got):\n%s", diff)
			}
			if len(got.Containers) != 0 {
				t.Errorf("Containers = %v, want none", got.Containers)
			}

			// Once the runtime creates it, it is found.
			tr.Mkdir(t, podRel[cgroupfs.DriverSystemd][corev1.PodQOSBurstable]+"/"+containerName[cgroupfs.DriverSystemd][cgroupfs.RuntimeContainerd])
			got, err = l.FindPod(ref)
			if err != nil {
				t.Fatalf("FindPod() error = %v", err)
			}
			if len(got.Pending) != 0 || len(got.Containers) != 1 {
				t.Errorf("FindPod() = %d containers, pending %v; want 1 container, none pending", len(got.Containers), got.Pending)
			}
		})
	}
}

func TestFindPodBadInput(t *testing.T) {
	tr := cgrouptest.NewV1(t, cgrouptest.Options{})
	tr.Kubelet(t, cgroupfs.DriverCgroupfs)
	tr.AddPod(t, cgroupfs.DriverCgroupfs, uidB, corev1.PodQOSBurstable, cgroupfs.RuntimeContainerd, cid)
	l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{})
	if err != nil {
		t.Fatalf("Detect() error = %v", err)
	}
	tests := []struct {
		name string
		ref  cgroupfs.PodRef
	}{
		{"empty UID", cgroupfs.PodRef{QOSClass: corev1.PodQOSBurstable}},
		{"UID stepping out", cgroupfs.PodRef{UID: "../../../etc", QOSClass: corev1.PodQOSBurstable}},
		{"UID with a slash", cgroupfs.PodRef{UID: "a/b", QOSClass: corev1.PodQOSBurstable}},
		{"no QoS class", cgroupfs.PodRef{UID: uidB}},
		{"unknown QoS class", cgroupfs.PodRef{UID: uidB, QOSClass: "Platinum"}},
		{"container ID stepping out", cgroupfs.PodRef{UID: uidB, QOSClass: corev1.PodQOSBurstable, ContainerIDs: []string{"containerd://../../x"}}},
		{"container ID with only a scheme", cgroupfs.PodRef{UID: uidB, QOSClass: corev1.PodQOSBurstable, ContainerIDs: []string{"containerd://"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.FindPod(tt.ref)
			if !errors.Is(err, cgroupfs.ErrInvalid) {
				t.Errorf("FindPod() error = %v, want ErrInvalid", err)
			}
			if errors.Is(err, cgroupfs.ErrNotFound) {
				t.Errorf("FindPod() error = %v also is ErrNotFound; a caller would retry it forever", err)
			}
		})
	}
}

// An ID whose scheme names no known runtime, or has no scheme, is looked up
// under every known naming of the driver.
func TestFindPodUnknownRuntime(t *testing.T) {
	for _, d := range []cgroupfs.Driver{cgroupfs.DriverSystemd, cgroupfs.DriverCgroupfs} {
		for _, rt := range []cgroupfs.Runtime{cgroupfs.RuntimeContainerd, cgroupfs.RuntimeCRIO, cgroupfs.RuntimeDocker} {
			for _, id := range []string{"kata://" + cid, cid} {
				t.Run(string(d)+"/"+string(rt)+"/"+id[:4], func(t *testing.T) {
					tr := cgrouptest.NewV2(t, cgrouptest.Options{})
					tr.Kubelet(t, d)
					tr.AddPod(t, d, uidE, corev1.PodQOSBestEffort, rt, cid)
					l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{})
					if err != nil {
						t.Fatalf("Detect() error = %v", err)
					}
					got, err := l.FindPod(cgroupfs.PodRef{UID: uidE, QOSClass: corev1.PodQOSBestEffort, ContainerIDs: []string{id}})
					if err != nil {
						t.Fatalf("FindPod() error = %v", err)
					}
					if len(got.Containers) != 1 {
						t.Fatalf("FindPod() found %d containers (pending %v), want 1", len(got.Containers), got.Pending)
					}
					if want := podRel[d][corev1.PodQOSBestEffort] + "/" + containerName[d][rt]; got.Containers[0].RelPath != want {
						t.Errorf("container RelPath = %s, want %s", got.Containers[0].RelPath, want)
					}
				})
			}
		}
	}
}

// On v1 a pod is found by the cpu hierarchy; a hierarchy the pod is missing
// from is left out of Dirs instead of failing the pod.
func TestFindPodMissingFromOneHierarchy(t *testing.T) {
	tr := cgrouptest.NewV1(t, cgrouptest.Options{})
	tr.Kubelet(t, cgroupfs.DriverCgroupfs)
	rel := podRel[cgroupfs.DriverCgroupfs][corev1.PodQOSGuaranteed]
	tr.MkdirIn(t, cgroupfs.CPU, rel)
	l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{})
	if err != nil {
		t.Fatalf("Detect() error = %v", err)
	}
	got, err := l.FindPod(cgroupfs.PodRef{UID: uidG, QOSClass: corev1.PodQOSGuaranteed})
	if err != nil {
		t.Fatalf("FindPod() error = %v", err)
	}
	want := map[cgroupfs.Controller]string{cgroupfs.CPU: filepath.Join(tr.Root, "cpu,cpuacct", rel)}
	if diff := cmp.Diff(want, got.Dirs); diff != "" {
		t.Errorf("Dirs mismatch (-want +got):\n%s", diff)
	}
	// Dir names the place whether or not the cgroup exists there.
	if d, ok := l.Dir(cgroupfs.CPUSet, rel); !ok || d != filepath.Join(tr.Root, "cpuset", rel) {
		t.Errorf("Dir(cpuset) = %q, %v; want %s", d, ok, filepath.Join(tr.Root, "cpuset", rel))
	}
	if _, ok := l.Dir("memory", rel); ok {
		t.Error("Dir(memory) found a hierarchy Detect does not track")
	}
}

// A kubelet run with --cgroup-root nests its pod root; the systemd names
// then carry the parent's prefix.
func TestFindPodCustomCgroupRoot(t *testing.T) {
	tests := []struct {
		name        string
		kubepodsDir string
		qos         corev1.PodQOSClass
		want        string
	}{
		{"systemd burstable", "kubelet.slice/kubelet-kubepods.slice", corev1.PodQOSBurstable,
			"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod7f3a9d12_0c4e_4b8a_b1d2_5e6f7a8b9c0d.slice"},
		{"systemd guaranteed", "kubelet.slice/kubelet-kubepods.slice", corev1.PodQOSGuaranteed,
			"kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod1b4e2c9a_7d1f_4c55_9a0e_3f1d2b6c8e70.slice"},
		{"cgroupfs besteffort", "kubelet/kubepods", corev1.PodQOSBestEffort,
			"kubelet/kubepods/besteffort/podc0ffee00-1234-4abc-8def-0123456789ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := cgrouptest.NewV2(t, cgrouptest.Options{})
			tr.Mkdir(t, tt.want)
			l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{KubepodsDir: tt.kubepodsDir})
			if err != nil {
				t.Fatalf("Detect() error = %v", err)
			}
			got, err := l.FindPod(cgroupfs.PodRef{UID: uidOf[tt.qos], QOSClass: tt.qos})
			if err != nil {
				t.Fatalf("FindPod() error = %v", err)
			}
			if got.RelPath != tt.want {
				t.Errorf("RelPath = %s, want %s", got.RelPath, tt.want)
			}
		})
	}
}

func TestQOSRelPath(t *testing.T) {
	tests := []struct {
		driver cgroupfs.Driver
		qos    corev1.PodQOSClass
		want   string
	}{
		{cgroupfs.DriverSystemd, corev1.PodQOSGuaranteed, "kubepods.slice"},
		{cgroupfs.DriverSystemd, corev1.PodQOSBurstable, "kubepods.slice/kubepods-burstable.slice"},
		{cgroupfs.DriverSystemd, corev1.PodQOSBestEffort, "kubepods.slice/kubepods-besteffort.slice"},
		{cgroupfs.DriverCgroupfs, corev1.PodQOSGuaranteed, "kubepods"},
		{cgroupfs.DriverCgroupfs, corev1.PodQOSBurstable, "kubepods/burstable"},
		{cgroupfs.DriverCgroupfs, corev1.PodQOSBestEffort, "kubepods/besteffort"},
	}
	for _, tt := range tests {
		t.Run(string(tt.driver)+"/"+string(tt.qos), func(t *testing.T) {
			tr := cgrouptest.NewV1(t, cgrouptest.Options{})
			l, err := cgroupfs.Detect(tr.Root, cgroupfs.DetectOptions{Driver: tt.driver})
			if err != nil {
				t.Fatalf("Detect() error = %v", err)
			}
			got, err := l.QOSRelPath(tt.qos)
			if err != nil {
				t.Fatalf("QOSRelPath() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("QOSRelPath() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRefForPod(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{UID: uidB},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status: corev1.PodStatus{
			QOSClass: corev1.PodQOSBurstable,
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "init", ContainerID: "containerd://aaa", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}},
				{Name: "sidecar", ContainerID: "containerd://bbb", State: running},
			},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "app", ContainerID: "containerd://ccc", State: running},
				{Name: "crashing", ContainerID: "containerd://ddd", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{}}},
				{Name: "starting", State: running},
			},
		},
	}
	want := cgroupfs.PodRef{UID: uidB, QOSClass: corev1.PodQOSBurstable, ContainerIDs: []string{"containerd://bbb", "containerd://ccc"}}
	if diff := cmp.Diff(want, cgroupfs.RefForPod(pod)); diff != "" {
		t.Errorf("RefForPod() mismatch (-want +got):\n%s", diff)
	}
}
