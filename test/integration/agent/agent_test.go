package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/nodeagent"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
	"github.com/infera-io/temper/nodeagent/layered/scxschema"
	"github.com/infera-io/temper/test/standin/standintest"
)

// podSpec describes one test pod and the tier the agent must give it.
type podSpec struct {
	name        string
	class       string // PriorityClass; "" for none
	cpu, mem    string // requests; "" for none
	limitCPU    string // "" for none; "=" for equal to the request (Guaranteed)
	tierAnnot   string
	want        wellknown.Tier
	wantFinding bool
}

func mixedPods() []podSpec {
	var ps []podSpec
	add := func(n int, prefix string, s podSpec) {
		for i := range n {
			s.name = fmt.Sprintf("%s-%d", prefix, i)
			ps = append(ps, s)
		}
	}
	add(3, "critical", podSpec{class: "infera-critical", cpu: "1", mem: "64Mi", limitCPU: "=", want: wellknown.TierCritical})
	add(4, "high", podSpec{class: "infera-high", cpu: "500m", mem: "64Mi", want: wellknown.TierHigh})
	add(6, "normal", podSpec{class: "infera-normal", cpu: "250m", mem: "64Mi", want: wellknown.TierNormal})
	add(4, "noclass-burstable", podSpec{cpu: "100m", want: wellknown.TierNormal})
	add(2, "noclass-guaranteed", podSpec{cpu: "200m", mem: "32Mi", limitCPU: "=", want: wellknown.TierNormal})
	add(3, "low", podSpec{class: "infera-low", cpu: "100m", want: wellknown.TierLow})
	add(4, "background", podSpec{class: "infera-background", cpu: "1", want: wellknown.TierBackground})
	add(2, "besteffort", podSpec{want: wellknown.TierBackground})
	add(1, "volunteer", podSpec{class: "infera-normal", cpu: "100m", tierAnnot: "background", want: wellknown.TierBackground})
	add(1, "climber", podSpec{class: "infera-low", cpu: "100m", tierAnnot: "critical", want: wellknown.TierLow, wantFinding: true})
	return ps
}

func (s podSpec) pod(ns, node string) *corev1.Pod {
	c := corev1.Container{Name: "app", Image: "registry.invalid/app:1"}
	if s.cpu != "" || s.mem != "" {
		c.Resources.Requests = corev1.ResourceList{}
		if s.cpu != "" {
			c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse(s.cpu)
		}
		if s.mem != "" {
			c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse(s.mem)
		}
	}
	if s.limitCPU == "=" {
		c.Resources.Limits = c.Resources.Requests.DeepCopy()
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: ns},
		Spec: corev1.PodSpec{
			NodeName:          node,
			PriorityClassName: s.class,
			Containers:        []corev1.Container{c},
		},
	}
	if s.tierAnnot != "" {
		p.Annotations = map[string]string{wellknown.TierAnnotation: s.tierAnnot}
	}
	return p
}

// rig is one agent on one node with faked host trees.
type rig struct {
	t       *testing.T
	node    string
	ns      string
	tree    *cgrouptest.Tree
	sysfs   string
	log     string
	cfg     *configv1alpha1.AgentConfiguration
	agent   *nodeagent.Agent
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// stop is the agent's clean stop (SIGTERM in a pod).
func (r *rig) stop() {
	r.t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("agent Run returned %v", err)
	}
	r.stopped = true
}

// rigOptions vary the node a rig fakes.
type rigOptions struct {
	// noSchedExt gives the node a kernel without sched_ext, so auto picks
	// the cgroup backend.
	noSchedExt bool
	// safeMode sets the safe-mode annotation before the agent starts.
	safeMode bool
	// hostCgroups runs the agent on this machine's real cgroup tree with
	// the kubelet's pod root at kubepodsPath (cgroupfs driver) instead of a
	// faked tree, and on the real CPU topology.
	hostCgroups  bool
	kubepodsPath string
	// configure adjusts the config last.
	configure func(*configv1alpha1.AgentConfiguration)
}

func newRig(t *testing.T, node string, window time.Duration) *rig {
	t.Helper()
	return newRigWith(t, node, window, rigOptions{})
}

func newRigWith(t *testing.T, node string, window time.Duration, ro rigOptions) *rig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	r := &rig{t: t, node: node, ns: node}
	if err := localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}); err != nil {
		t.Fatal(err)
	}

	if !ro.hostCgroups {
		r.tree = cgrouptest.NewV2(t, cgrouptest.Options{CPUs: "0-7"})
		r.tree.Kubelet(t, cgroupfs.DriverSystemd)
	}
	r.sysfs = filepath.Join(dir, "sched_ext")
	if !ro.noSchedExt {
		must(t, standintest.FakeSchedExt(r.sysfs))
	}
	if ro.safeMode {
		r.setSafeMode(true)
	}
	cpuRoot := filepath.Join(dir, "cpu")
	must(t, os.MkdirAll(cpuRoot, 0o755))
	must(t, os.WriteFile(filepath.Join(cpuRoot, "online"), []byte("0-7\n"), 0o644))
	r.log = filepath.Join(dir, "standin.log")
	t.Setenv("STANDIN_SYSFS", r.sysfs)
	t.Setenv("STANDIN_LOG", r.log)

	r.cfg = configv1alpha1.DefaultAgentConfiguration()
	r.cfg.Backend = configv1alpha1.AgentBackendAuto
	if ro.hostCgroups {
		r.cfg.Cgroup.Root = "/sys/fs/cgroup"
		r.cfg.Cgroup.Driver = configv1alpha1.AgentCgroupDriverCgroupfs
		r.cfg.Cgroup.KubepodsPath = ro.kubepodsPath
		r.cfg.Cgroup.CPUManagerState = filepath.Join(dir, "no-cpu-manager-state")
		cpuRoot = "/sys/devices/system/cpu"
	} else {
		r.cfg.Cgroup.Root = r.tree.Root
		// No real cgroups to key the eBPF tiers by.
		r.cfg.Observation.EBPF = false
	}
	r.cfg.SCX.Binary = standin
	r.cfg.SCX.ConfigPath = filepath.Join(dir, "run", "layered.json")
	r.cfg.StateDir = filepath.Join(dir, "state")
	r.cfg.CoalesceWindow.Duration = window
	r.cfg.Cgroup.ReconcileInterval.Duration = time.Second
	r.cfg.Server.Address = freeAddr(t)
	r.cfg.Server.GRPCSocket = filepath.Join(dir, "agent.sock")
	if ro.configure != nil {
		ro.configure(r.cfg)
	}

	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	r.agent, err = nodeagent.New(nodeagent.Options{
		Config: r.cfg, NodeName: node, Client: cs, Log: testr.NewWithOptions(t, testr.Options{Verbosity: 1}),
		SchedExtRoot: r.sysfs, SysCPURoot: cpuRoot,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.agent.Run(runCtx) }()
	t.Cleanup(func() {
		if r.stopped {
			return
		}
		// Leave no stand-in behind: stand down, then stop the agent.
		r.setSafeMode(true)
		r.waitAnnotations("safe mode before cleanup", func(status string, _ wellknown.TierLoad) bool { return status == wellknown.AgentStatusSafeMode })
		cancel()
		if err := <-r.done; err != nil {
			t.Errorf("agent Run returned %v", err)
		}
	})
	return r
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// createPods creates the pods concurrently (a burst, as a Deployment
// rollout makes) and then their cgroups, as the kubelet would.
func (r *rig) createPods(specs []podSpec) map[string]*corev1.Pod {
	r.t.Helper()
	out := make(map[string]*corev1.Pod, len(specs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	sem := make(chan struct{}, 8)
	for _, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p := s.pod(r.ns, r.node)
			if err := env.Client.Create(context.Background(), p); err != nil {
				errs <- fmt.Errorf("create %s: %w", s.name, err)
				return
			}
			mu.Lock()
			out[s.name] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		r.t.Fatal(err)
	}
	for _, p := range out {
		r.tree.AddPod(r.t, cgroupfs.DriverSystemd, string(p.UID), p.Status.QOSClass, cgroupfs.RuntimeContainerd)
	}
	return out
}

func (r *rig) annotations() (string, wellknown.TierLoad, bool) {
	var n corev1.Node
	if err := env.Client.Get(context.Background(), types.NamespacedName{Name: r.node}, &n); err != nil {
		r.t.Fatal(err)
	}
	v, ok := n.Annotations[wellknown.TierLoadAnnotation]
	if !ok {
		return n.Annotations[wellknown.AgentStatusAnnotation], wellknown.TierLoad{}, false
	}
	l, err := wellknown.ParseTierLoad(v)
	if err != nil {
		r.t.Fatalf("agent wrote an invalid tier-load: %v", err)
	}
	return n.Annotations[wellknown.AgentStatusAnnotation], l, true
}

func (r *rig) waitAnnotations(what string, cond func(string, wellknown.TierLoad) bool) (string, wellknown.TierLoad) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var status string
	var load wellknown.TierLoad
	for time.Now().Before(deadline) {
		var ok bool
		status, load, ok = r.annotations()
		if ok && cond(status, load) {
			return status, load
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("timed out waiting for %s: agent-status %q, tier-load %+v", what, status, load)
	return "", wellknown.TierLoad{}
}

func (r *rig) setSafeMode(on bool) {
	r.t.Helper()
	var n corev1.Node
	must(r.t, env.Client.Get(context.Background(), types.NamespacedName{Name: r.node}, &n))
	patch := client.MergeFrom(n.DeepCopy())
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	if on {
		n.Annotations[wellknown.SafeModeRequestedAnnotation] = wellknown.SafeModeRequestedValue
	} else {
		delete(n.Annotations, wellknown.SafeModeRequestedAnnotation)
	}
	must(r.t, env.Client.Patch(context.Background(), &n, patch))
}

func (r *rig) standinEvents() map[string]int {
	r.t.Helper()
	out := map[string]int{}
	f, err := os.Open(r.log)
	if os.IsNotExist(err) {
		return out
	}
	must(r.t, err)
	defer func() { _ = f.Close() }()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var e struct{ Event string }
		must(r.t, json.Unmarshal(s.Bytes(), &e))
		out[e.Event]++
	}
	return out
}

func (r *rig) kernelState() string {
	b, err := os.ReadFile(filepath.Join(r.sysfs, "state"))
	must(r.t, err)
	return strings.TrimSpace(string(b))
}

func wantCounts(specs []podSpec) map[wellknown.Tier]int32 {
	out := map[wellknown.Tier]int32{}
	for _, s := range specs {
		out[s.want]++
	}
	return out
}

func countsMatch(load wellknown.TierLoad, want map[wellknown.Tier]int32) bool {
	for _, t := range wellknown.AllTiers() {
		if load.Tiers[t].Pods != want[t] {
			return false
		}
	}
	return true
}

func TestAgentEnforcesThirtyPods(t *testing.T) {
	const window = 4 * time.Second
	r := newRig(t, "agent-node-a", window)
	// Before any pod: the empty node is enforced with the system and
	// catch-all layers only.
	r.waitAnnotations("first enforcement", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingSCX })
	startsBefore := r.standinEvents()["start"]

	specs := mixedPods()
	if len(specs) != 30 {
		t.Fatalf("want 30 pods, have %d", len(specs))
	}
	burstStart := time.Now()
	r.createPods(specs)
	burst := time.Since(burstStart)
	want := wantCounts(specs)
	status, load := r.waitAnnotations("30 pods in tier-load", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingSCX && countsMatch(l, want)
	})
	if load.Backend != wellknown.BackendSCXLayered || load.AllocatableMilli != 8000 {
		t.Errorf("tier-load = %+v", load)
	}
	if got := load.Tiers[wellknown.TierCritical].RequestMilli; got != 3000 {
		t.Errorf("critical requestMilli = %d, want 3000", got)
	}
	if load.FencedMilli != 3000 {
		t.Errorf("fencedMilli = %d, want 3000 (3 whole cores for 3 × 1 CPU)", load.FencedMilli)
	}
	t.Logf("agent-status %q, tier-load %+v", status, load)

	// A burst of 30 pod events inside one coalescing window is at most 2
	// scheduler restarts. (Only a burst that fit in the window proves it;
	// on a machine too loaded for that, say so instead of failing.)
	n := r.standinEvents()["start"] - startsBefore
	switch {
	case burst < window && (n < 1 || n > 2):
		t.Errorf("the burst (%s, window %s) caused %d scx_layered starts, want 1 or 2", burst, window, n)
	case burst >= window:
		t.Logf("the burst took %s, longer than the %s window; %d starts (not asserted)", burst, window, n)
	}

	// Every pod has the tier the contract gives it.
	byName := map[string]nodeagent.Assignment{}
	for _, a := range r.agent.Assignments() {
		byName[a.Pod.Name] = a
	}
	for _, s := range specs {
		a, ok := byName[s.name]
		if !ok {
			t.Errorf("pod %s not assigned", s.name)
			continue
		}
		if a.Tier != s.want {
			t.Errorf("pod %s: tier %s, want %s", s.name, a.Tier, s.want)
		}
		if got := len(a.Findings) > 0; got != s.wantFinding {
			t.Errorf("pod %s: findings %v, want finding=%v", s.name, a.Findings, s.wantFinding)
		}
		if a.Pending() {
			t.Errorf("pod %s: cgroup not found in the faked tree", s.name)
		}
	}

	// The config scx_layered runs is schema-valid and matches the pods'
	// cgroups.
	cfg, err := os.ReadFile(r.cfg.SCX.ConfigPath)
	must(t, err)
	if err := scxschema.Validate(cfg); err != nil {
		t.Fatalf("generated config is invalid: %v", err)
	}
	// The gRPC API serves exactly that config, from memory.
	conn, err := grpc.NewClient("unix://"+r.cfg.Server.GRPCSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	lc, err := inferav1.NewAgentServiceClient(conn).GetLayeredConfig(context.Background(), &inferav1.GetLayeredConfigRequest{})
	_ = conn.Close()
	must(t, err)
	if lc.GetBackend() != wellknown.BackendSCXLayered || !bytes.Equal([]byte(lc.GetConfigJson()), cfg) {
		t.Errorf("GetLayeredConfig = backend %q, %d bytes; want the %d bytes scx_layered runs", lc.GetBackend(), len(lc.GetConfigJson()), len(cfg))
	}
	critical := byName["critical-0"]
	if !strings.Contains(string(cfg), critical.CgroupRelPath+"/") {
		t.Errorf("config does not match critical pod cgroup %s", critical.CgroupRelPath)
	}
	if r.kernelState() != "enabled" {
		t.Errorf("kernel state %q", r.kernelState())
	}

	// Deleting pods is reflected.
	for _, name := range []string{"normal-0", "normal-1", "background-0", "background-1", "background-2"} {
		// No kubelet confirms a graceful deletion here, so delete as the
		// kubelet would once the containers are gone.
		must(t, env.Client.Delete(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.ns}}, client.GracePeriodSeconds(0)))
	}
	want[wellknown.TierNormal] -= 2
	want[wellknown.TierBackground] -= 3
	// Wait for the config without those pods to be attached, not just
	// counted: safe mode during a restart kills a stand-in that has not yet
	// installed its signal handler, which logs no stop.
	_, after := r.waitAnnotations("deletions enforced", func(s string, l wellknown.TierLoad) bool {
		return countsMatch(l, want) && s == wellknown.AgentStatusEnforcingSCX
	})
	if after.Gen <= load.Gen {
		t.Errorf("gen did not rise after deletions: %d → %d", load.Gen, after.Gen)
	}

	// Safe mode stands the scheduler down; lifting it re-engages.
	stops := r.standinEvents()["stop"]
	r.setSafeMode(true)
	_, safe := r.waitAnnotations("safe mode", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	if r.kernelState() != "disabled" || r.standinEvents()["stop"] != stops+1 {
		t.Errorf("safe mode left the scheduler attached: kernel %q, events %v", r.kernelState(), r.standinEvents())
	}
	if safe.Backend != wellknown.BackendNone || safe.FencedMilli != 0 || !countsMatch(safe, want) {
		t.Errorf("tier-load in safe mode = %+v", safe)
	}
	r.setSafeMode(false)
	r.waitAnnotations("re-engaged", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingSCX })
	if r.kernelState() != "enabled" {
		t.Errorf("kernel state after re-engaging %q", r.kernelState())
	}
}

func TestAgentPatchDoesNotClobberOtherAnnotations(t *testing.T) {
	r := newRig(t, "agent-node-b", 200*time.Millisecond)
	r.waitAnnotations("first enforcement", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingSCX })
	var n corev1.Node
	must(t, env.Client.Get(context.Background(), types.NamespacedName{Name: r.node}, &n))
	patch := client.MergeFrom(n.DeepCopy())
	n.Annotations["team.example/owner"] = "platform"
	must(t, env.Client.Patch(context.Background(), &n, patch))
	r.createPods([]podSpec{{name: "one", class: "infera-high", cpu: "100m", want: wellknown.TierHigh}})
	r.waitAnnotations("the pod", func(_ string, l wellknown.TierLoad) bool { return l.Tiers[wellknown.TierHigh].Pods == 1 })
	must(t, env.Client.Get(context.Background(), types.NamespacedName{Name: r.node}, &n))
	if n.Annotations["team.example/owner"] != "platform" {
		t.Fatalf("agent patch clobbered another annotation: %v", n.Annotations)
	}
}

// freeAddr is a loopback address with a port free right now (the agent's
// config refuses port 0, which would be useless to a Prometheus scrape).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	must(t, l.Close())
	return addr
}
