package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
)

// The agent on this machine's real cgroup v1 kernel: the cgroup backend
// enforces pods whose cgroups (in a private subtree of the real hierarchy)
// hold real busy processes, the metrics read the real cgroup and PSI files,
// and safe mode leaves every cgroup as the kubelet made it.
func TestAgentOnHostCgroupV1(t *testing.T) {
	hostcg.RequireRoot(t)
	const root = "/sys/fs/cgroup"
	if v, err := cgroupfs.DetectVersion(root); err != nil || v != cgroupfs.V1 {
		t.Skipf("%s is not cgroup v1 here (%v, %v); the VM suite covers v2", root, v, err)
	}
	host, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatal(err)
	}
	cpuH, cpusetH := host.Hierarchies[cgroupfs.CPU], host.Hierarchies[cgroupfs.CPUSet]
	if cpusetH == "" {
		t.Skip("no v1 cpuset hierarchy")
	}
	// CPU usage is in cpuacct, co-mounted with cpu or on its own.
	hier := []string{cpuH, cpusetH}
	if _, err := os.Stat(filepath.Join(cpuH, "cpuacct.usage")); err != nil {
		hier = append(hier, filepath.Join(root, "cpuacct"))
	}
	base := hostcg.RandomName(t)
	kp := base + "/kubepods"
	sb := hostcg.New(t)
	var dirs []string
	for _, h := range hier {
		for _, rel := range []string{base, kp, kp + "/burstable", kp + "/besteffort"} {
			sb.Mkdir(filepath.Join(h, rel), h == cpusetH)
			if h == cpuH || h == cpusetH { // cpuacct holds counters only
				dirs = append(dirs, filepath.Join(h, rel))
			}
		}
	}
	for rel, v := range map[string]string{kp + "/burstable": "1024", kp + "/besteffort": "2"} {
		must(t, os.WriteFile(filepath.Join(cpuH, rel, "cpu.shares"), []byte(v), 0))
	}

	r := newRigWith(t, "agent-node-host", 200*time.Millisecond, rigOptions{
		noSchedExt: true, safeMode: true, hostCgroups: true, kubepodsPath: kp,
		configure: func(c *configv1alpha1.AgentConfiguration) {
			c.Observation.SampleInterval.Duration = time.Second
			c.Observation.TraceDir = filepath.Join(t.TempDir(), "traces")
		},
	})
	r.waitAnnotations("safe mode at start", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	specs := []podSpec{
		{name: "crit", class: "infera-critical", cpu: "500m", mem: "32Mi", limitCPU: "=", want: wellknown.TierCritical},
		{name: "batch", class: "infera-background", cpu: "500m", want: wellknown.TierBackground},
		{name: "scratch", want: wellknown.TierBackground},
		{name: "api", class: "infera-high", cpu: "100m", want: wellknown.TierHigh},
	}
	cpuDirs := map[string]string{}
	for _, s := range specs {
		p := s.pod(r.ns, r.node)
		must(t, env.Client.Create(context.Background(), p))
		l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{KubepodsDir: kp})
		must(t, err)
		rel, err := l.PodRelPath(string(p.UID), p.Status.QOSClass)
		must(t, err)
		var podDirs []string
		for _, h := range hier {
			sb.Mkdir(filepath.Join(h, rel), h == cpusetH)
			if h == cpuH || h == cpusetH {
				dirs = append(dirs, filepath.Join(h, rel))
			}
			podDirs = append(podDirs, filepath.Join(h, rel))
		}
		cpuDirs[s.name] = filepath.Join(cpuH, rel)
		// The kubelet's pod-level cpu.shares: requests in shares, 2 without.
		must(t, os.WriteFile(filepath.Join(cpuH, rel, "cpu.shares"), []byte(map[string]string{
			"crit": "512", "batch": "512", "scratch": "2", "api": "102",
		}[s.name]), 0))
		// Real work in the pod: a busy loop in the batch pod, sleepers
		// elsewhere.
		if s.name == "batch" {
			sb.StartBusy(podDirs...)
		} else {
			sb.Start(podDirs...)
		}
	}
	r.assignedCgroups(len(specs))
	stock := hostcg.ConfigSnapshot(t, dirs)

	r.setSafeMode(false)
	r.waitAnnotations("cgroup enforcement", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingCgroup && l.Backend == wellknown.BackendCgroup
	})
	waitFile(t, cpuDirs["batch"], "cpu.idle", "1")
	waitFile(t, cpuDirs["scratch"], "cpu.idle", "1")
	waitFile(t, cpuDirs["api"], "cpu.shares", "204")   // the kubelet's 102 × 2 (100m)
	waitFile(t, cpuDirs["crit"], "cpu.shares", "2048") // 512 × 4

	// The metrics read the real files: the busy pod's CPU time grows.
	usage := func() float64 {
		fams, err := r.agent.Metrics().Registry().Gather()
		must(t, err)
		for _, f := range fams {
			if f.GetName() != "infera_pod_cpu_usage_seconds_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				if labelValue(m, "pod") == "batch" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}
	first := usage()
	if first < 0 {
		t.Fatal("no infera_pod_cpu_usage_seconds_total for the busy pod")
	}
	deadline := time.Now().Add(20 * time.Second)
	for usage() <= first {
		if time.Now().After(deadline) {
			t.Fatalf("the busy pod's CPU usage did not grow from %v", first)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Over HTTP, as Prometheus scrapes it: every family the agent exports
	// on this backend and kernel.
	scrapeFamilies(t, r.agent.HTTPAddress(), []string{
		"infera_tier_pods", "infera_tier_cpu_request_cores", "infera_config_generation", "infera_backend_state", "infera_safe_mode",
		"infera_scheduler_starts_total", "infera_scheduler_exits_total", "infera_scheduler_ejections_total",
		"infera_apply_duration_seconds", "infera_cgroup_writes_total", "infera_cgroup_drift_total",
		"infera_pod_cpu_usage_seconds_total", "infera_pod_cpu_throttled_seconds_total", "infera_pod_cpu_throttled_periods_total",
		"infera_node_cpu_pressure_seconds_total",
		"infera_agent_process_cpu_seconds_total", "infera_agent_process_resident_memory_bytes",
	})
	// Every write is in the audit, with the value found and the reason.
	code, body := httpGet(t, "http://"+r.agent.HTTPAddress()+"/audit")
	var audit struct {
		Records []struct {
			Path, File, Old, New, Reason string
			Kind                         string
		}
	}
	must(t, json.Unmarshal([]byte(body), &audit))
	found := false
	for _, rec := range audit.Records {
		found = found || rec.Path == cpuDirs["batch"] && rec.File == "cpu.idle" && rec.Old == "0" && rec.New == "1" && rec.Kind == "set" && strings.Contains(rec.Reason, "background")
	}
	if code != 200 || !found {
		t.Errorf("/audit = %d, no record of batch's cpu.idle 0 → 1: %s", code, body)
	}

	// /readyz means enforcement verified, and the gRPC API on its socket
	// says the same.
	if code, body := httpGet(t, "http://"+r.agent.HTTPAddress()+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q, want 200: enforcement verified", code, body)
	}
	conn, err := grpc.NewClient("unix://"+r.cfg.Server.GRPCSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer func() { _ = conn.Close() }()
	api := inferav1.NewAgentServiceClient(conn)
	st, err := api.GetStatus(context.Background(), &inferav1.GetStatusRequest{})
	must(t, err)
	if !st.GetEnforcementVerified() || st.GetAgentStatus() != wellknown.AgentStatusEnforcingCgroup || !strings.Contains(st.GetEnforcementReason(), "read back") {
		t.Errorf("GetStatus = %v", st)
	}
	pl, err := api.ListPods(context.Background(), &inferav1.ListPodsRequest{})
	must(t, err)
	if len(pl.GetPods()) != len(specs) {
		t.Errorf("ListPods returned %d pods, want %d", len(pl.GetPods()), len(specs))
	}
	for _, p := range pl.GetPods() {
		if p.GetEnforcement() != inferav1.EnforcementState_ENFORCEMENT_STATE_ENFORCED || p.GetCgroupPath() == "" {
			t.Errorf("ListPods: %v", p)
		}
	}

	// The observation layer samples the pods' real threads and lints them:
	// every invariant has a verdict.
	deadline = time.Now().Add(20 * time.Second)
	for {
		fams, err := r.agent.Metrics().Registry().Gather()
		must(t, err)
		invariants := map[string]bool{}
		for _, f := range fams {
			if f.GetName() == "infera_lint_violation" {
				for _, m := range f.GetMetric() {
					invariants[labelValue(m, "invariant")] = true
				}
			}
		}
		if len(invariants) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("infera_lint_violation has invariants %v, want the 4 of the linter", invariants)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// /observe: the machine, the layers, the lint verdicts and, from the
	// second sample on, the busy pod's thread at the top.
	type observeBody struct {
		SchemaVersion int `json:"schema_version"`
		Machine       struct {
			CPUCount int `json:"cpu_count"`
		} `json:"machine"`
		Layers []struct {
			Name string `json:"name"`
		} `json:"layers"`
		TopThreads []struct {
			Pod string `json:"pod"`
		} `json:"top_threads"`
		Lint []struct {
			Invariant string `json:"invariant"`
		} `json:"lint"`
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		code, body := httpGet(t, "http://"+r.agent.HTTPAddress()+"/observe")
		var obs observeBody
		must(t, json.Unmarshal([]byte(body), &obs))
		if code != 200 || obs.SchemaVersion != 1 || obs.Machine.CPUCount < 1 || len(obs.Layers) == 0 || len(obs.Lint) != 4 {
			t.Fatalf("/observe = %d %s", code, body)
		}
		if len(obs.TopThreads) > 0 && obs.TopThreads[0].Pod == r.ns+"/batch" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/observe top_threads does not lead with the busy pod: %s", body)
		}
		time.Sleep(500 * time.Millisecond)
	}

	// eBPF (root, BTF here): the busy background pod's wakeups land in the
	// background tier's run-queue latency histogram.
	deadline = time.Now().Add(20 * time.Second)
	for {
		fams, err := r.agent.Metrics().Registry().Gather()
		must(t, err)
		var count uint64
		for _, f := range fams {
			if f.GetName() != "infera_runqueue_latency_seconds" {
				continue
			}
			for _, m := range f.GetMetric() {
				if labelValue(m, "tier") == string(wellknown.TierBackground) {
					count = m.GetHistogram().GetSampleCount()
				}
			}
		}
		if count > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("infera_runqueue_latency_seconds{tier=background} has no samples (is the eBPF probe loaded? see the log)")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// And over HTTP, the families the observation layer adds.
	scrapeFamilies(t, r.agent.HTTPAddress(), []string{"infera_runqueue_latency_seconds", "infera_lint_violation"})

	// Trace capture over the API: the busy pod for 1 s, a pod that is not
	// on this node, and the file it wrote.
	tr, err := api.CaptureTrace(context.Background(), &inferav1.CaptureTraceRequest{
		Pod: &inferav1.PodRef{Namespace: r.ns, Name: "batch"}, DurationSeconds: 1})
	must(t, err)
	if tr.GetEvents() == 0 || tr.GetSizeBytes() == 0 {
		t.Errorf("CaptureTrace(batch) = %v, want events", tr)
	}
	if _, err := os.Stat(tr.GetPath()); err != nil {
		t.Errorf("trace file: %v", err)
	}
	if _, err := api.CaptureTrace(context.Background(), &inferav1.CaptureTraceRequest{
		Pod: &inferav1.PodRef{Namespace: r.ns, Name: "elsewhere"}, DurationSeconds: 1}); status.Code(err) != codes.NotFound {
		t.Errorf("CaptureTrace(a pod not on this node) = %v, want NotFound", err)
	}

	r.setSafeMode(true)
	r.waitAnnotations("safe mode", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	if diff := cmp.Diff(stock, hostcg.ConfigSnapshot(t, dirs)); diff != "" {
		t.Errorf("real cgroups after safe mode differ from the stock values (-stock +now):\n%s", diff)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}

// scrapeFamilies scrapes /metrics and checks every family is there.
func scrapeFamilies(t *testing.T, addr string, want []string) {
	t.Helper()
	code, body := httpGet(t, "http://"+addr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics is not the text format: %v", err)
	}
	for _, n := range want {
		if _, ok := fams[n]; !ok {
			t.Errorf("/metrics has no %s", n)
		}
	}
}
