package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/telemetry"
	"github.com/infera-io/temper/webhooks/overcommit"
)

func TestLintStrict(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", "charts/temper", "-f", c.path)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// Each values file renders to exactly its golden file, and every document
// strict-decodes into its Kubernetes type.
func TestTemplateGolden(t *testing.T) {
	for _, c := range valuesCases(t) {
		t.Run(c.name, func(t *testing.T) {
			out := render(t, c)
			decodeAll(t, out)
			golden := filepath.Join("testdata", "golden", c.name+".yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./test/chart -run TestTemplateGolden -update)", err)
			}
			if d := cmp.Diff(string(want), string(out)); d != "" {
				t.Errorf("render of %s differs from %s (-golden +render; rerun with -update if intended):\n%s", c.name, golden, d)
			}
		})
	}
}

func caseNamed(t *testing.T, name string) valuesCase {
	t.Helper()
	for _, c := range valuesCases(t) {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no values file %s", name)
	return valuesCase{}
}

func TestAgentDaemonSets(t *testing.T) {
	c := caseNamed(t, "canary")
	objs := decodeAll(t, render(t, c))
	stable := find[*appsv1.DaemonSet](t, objs, "infera-agent")
	canary := find[*appsv1.DaemonSet](t, objs, "infera-agent-canary")

	for _, ds := range []*appsv1.DaemonSet{stable, canary} {
		spec := ds.Spec.Template.Spec
		if spec.PriorityClassName != "system-node-critical" {
			t.Errorf("%s: priorityClassName %q", ds.Name, spec.PriorityClassName)
		}
		if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
			t.Errorf("%s: tolerations %+v, want one that tolerates every taint", ds.Name, spec.Tolerations)
		}
		if !spec.HostPID || spec.HostNetwork {
			t.Errorf("%s: hostPID %v hostNetwork %v", ds.Name, spec.HostPID, spec.HostNetwork)
		}
		ru := ds.Spec.UpdateStrategy.RollingUpdate
		if ru == nil || ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable.IntValue() != 1 {
			t.Errorf("%s: rolling update %+v, want maxSurge 0 and maxUnavailable 1", ds.Name, ru)
		}
		if ds.Spec.MinReadySeconds < 10 {
			t.Errorf("%s: minReadySeconds %d", ds.Name, ds.Spec.MinReadySeconds)
		}
		if !equalMaps(ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels) {
			t.Errorf("%s: selector %v does not select the template labels %v", ds.Name, ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels)
		}
		ctr := spec.Containers[0]
		if len(ctr.Env) != 4 || ctr.Env[0].Name != "NODE_NAME" || ctr.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" ||
			ctr.Env[1] != (corev1.EnvVar{Name: "GOGC", Value: "50"}) || ctr.Env[2] != (corev1.EnvVar{Name: "GOMEMLIMIT", Value: "192MiB"}) ||
			ctr.Env[3] != (corev1.EnvVar{Name: "GOMAXPROCS", Value: "1"}) {
			t.Errorf("%s: env %+v, want NODE_NAME from spec.nodeName, GOGC 50, GOMEMLIMIT 192MiB and GOMAXPROCS 1 (agent.goRuntime)", ds.Name, ctr.Env)
		}
		rp := ctr.ReadinessProbe
		if rp == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.StrVal != "http" || ctr.Ports[0].ContainerPort != 9100 {
			t.Errorf("%s: readiness %+v ports %+v, want /readyz on 9100", ds.Name, rp, ctr.Ports)
		}
		sc := ctr.SecurityContext
		if sc.Privileged != nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
			!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE", "KILL"}) {
			t.Errorf("%s: security context %+v", ds.Name, sc)
		}
		mounts := map[string]string{}
		for _, m := range ctr.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
		hostPaths := map[string]string{}
		for _, v := range spec.Volumes {
			if v.HostPath != nil {
				hostPaths[v.Name] = v.HostPath.Path + "->" + mounts[v.Name]
			}
		}
		wantHP := map[string]string{"sys": "/sys->/host/sys", "run": "/run/infera->/run/infera", "state": "/var/lib/infera->/var/lib/infera"}
		if d := cmp.Diff(wantHP, hostPaths); d != "" {
			t.Errorf("%s: host paths (-want +got):\n%s", ds.Name, d)
		}
	}

	// The channels partition the nodes by the canary label.
	terms := func(ds *appsv1.DaemonSet) corev1.NodeSelectorRequirement {
		a := ds.Spec.Template.Spec.Affinity
		if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
			t.Fatalf("%s has no required node affinity", ds.Name)
		}
		return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
	}
	if r := terms(stable); r.Key != "infera.io/agent-channel" || r.Operator != corev1.NodeSelectorOpNotIn || !slices.Equal(r.Values, []string{"canary"}) {
		t.Errorf("stable affinity %+v, want NotIn canary", r)
	}
	if r := terms(canary); r.Key != "infera.io/agent-channel" || r.Operator != corev1.NodeSelectorOpIn || !slices.Equal(r.Values, []string{"canary"}) {
		t.Errorf("canary affinity %+v, want In canary", r)
	}
	if got := stable.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/temper/infera-agent:v1.2.0" {
		t.Errorf("stable image %s", got)
	}
	if got := canary.Spec.Template.Spec.Containers[0].Image; got != "registry.example.com/temper/infera-agent:v1.3.0-rc.1" {
		t.Errorf("canary image %s", got)
	}
	if stable.Namespace != "temper-ops" || canary.Spec.Template.Spec.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("namespace %s, pull secrets %+v", stable.Namespace, canary.Spec.Template.Spec.ImagePullSecrets)
	}

	// Without the canary channel, one DaemonSet runs everywhere.
	def := decodeAll(t, render(t, caseNamed(t, "default")))
	if n := len(findAll[*appsv1.DaemonSet](def)); n != 1 {
		t.Errorf("default values render %d DaemonSets, want 1", n)
	}
	if a := find[*appsv1.DaemonSet](t, def, "infera-agent").Spec.Template.Spec.Affinity; a != nil {
		t.Errorf("default agent has affinity %+v", a)
	}

	// Privileged mode, the host's scx_layered and the CPU manager state.
	full := decodeAll(t, render(t, caseNamed(t, "full")))
	ctr := find[*appsv1.DaemonSet](t, full, "infera-agent").Spec.Template.Spec.Containers[0]
	if ctr.SecurityContext.Privileged == nil || !*ctr.SecurityContext.Privileged || ctr.SecurityContext.Capabilities != nil {
		t.Errorf("privileged agent security context %+v", ctr.SecurityContext)
	}
	var paths []string
	for _, m := range ctr.VolumeMounts {
		paths = append(paths, m.MountPath)
	}
	for _, p := range []string{"/usr/bin/scx_layered", "/var/lib/kubelet/cpu_manager_state"} {
		if !slices.Contains(paths, p) {
			t.Errorf("privileged agent lacks mount %s: %v", p, paths)
		}
	}
	cm := find[*corev1.ConfigMap](t, full, "infera-agent-config")
	cfg := loadAgentConfig(t, cm)
	if cfg.PriorityMapping.Critical != 2000000 || cfg.SysRoot != "/host/sys" || cfg.Cgroup.Root != "/host/sys/fs/cgroup" {
		t.Errorf("agent config from the chart: priority mapping %+v, sys_root %s, cgroup root %s", cfg.PriorityMapping, cfg.SysRoot, cfg.Cgroup.Root)
	}
	loadAgentConfig(t, find[*corev1.ConfigMap](t, def, "infera-agent-config"))
}

// loadAgentConfig loads the chart's agent.toml the way the agent does
// (strict: unknown keys and bad values are errors).
func loadAgentConfig(t *testing.T, cm *corev1.ConfigMap) *configv1alpha1.AgentConfiguration {
	t.Helper()
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(cm.Data["agent.toml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := configv1alpha1.LoadAgentConfiguration(path)
	if err != nil {
		t.Fatalf("the agent refuses the chart's config: %v\n%s", err, cm.Data["agent.toml"])
	}
	return cfg
}

func equalMaps(sub, m map[string]string) bool {
	for k, v := range sub {
		if m[k] != v {
			return false
		}
	}
	return true
}

// readManifests strict-decodes a file of config/.
func readManifests(t *testing.T, rel string) []client.Object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, b)
}

// The chart's rules are controller-gen's: a new +kubebuilder:rbac marker
// fails this test until the chart has it too.
func TestRBACMatchesControllerGen(t *testing.T) {
	// full: the gateway on.
	objs := decodeAll(t, render(t, caseNamed(t, "full")))
	for _, tc := range []struct{ file, kind, name string }{
		{"config/rbac/agent/role.yaml", "ClusterRole", "infera-agent"},
		{"config/rbac/manager/role.yaml", "ClusterRole", "infera-manager"},
		{"config/rbac/manager/role.yaml", "Role", "infera-manager"},
		{"config/rbac/manager/leader_election_role.yaml", "Role", "infera-manager-leader-election"},
		{"config/rbac/gateway/role.yaml", "ClusterRole", "infera-gateway"},
		{"config/rbac/gateway/role.yaml", "Role", "infera-gateway"},
		{"config/rbac/gateway/user_roles.yaml", "ClusterRole", "infera-viewer"},
		{"config/rbac/gateway/user_roles.yaml", "ClusterRole", "infera-operator"},
		{"config/rbac/gateway/user_roles.yaml", "ClusterRole", "infera-metrics-reader"},
	} {
		var want, got []rbacv1.PolicyRule
		for _, o := range readManifests(t, tc.file) {
			switch r := o.(type) {
			case *rbacv1.ClusterRole:
				if tc.kind == "ClusterRole" && r.Name == tc.name {
					want = r.Rules
				}
			case *rbacv1.Role:
				if tc.kind == "Role" && r.Name == tc.name {
					want = r.Rules
				}
			}
		}
		if want == nil {
			t.Fatalf("%s has no %s %s", tc.file, tc.kind, tc.name)
		}
		if tc.kind == "ClusterRole" {
			got = find[*rbacv1.ClusterRole](t, objs, tc.name).Rules
		} else {
			got = find[*rbacv1.Role](t, objs, tc.name).Rules
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%s %s: chart rules differ from %s (-generated +chart):\n%s", tc.kind, tc.name, tc.file, d)
		}
	}
	// Every ServiceAccount the chart binds exists in the render.
	for _, b := range findAll[*rbacv1.ClusterRoleBinding](objs) {
		for _, s := range b.Subjects {
			find[*corev1.ServiceAccount](t, objs, s.Name)
		}
	}
}

// Helm reads only files inside the chart, so it carries copies; make
// manifests refreshes them.
func TestChartCopiesAreCurrent(t *testing.T) {
	root := repoRoot(t)
	for _, pair := range [][2]string{
		{"config/crd/bases", "charts/temper/crds"},
	} {
		src, _ := filepath.Glob(filepath.Join(root, pair[0], "*.yaml"))
		dst, _ := filepath.Glob(filepath.Join(root, pair[1], "*.yaml"))
		var srcNames, dstNames []string
		for _, f := range src {
			srcNames = append(srcNames, filepath.Base(f))
		}
		for _, f := range dst {
			dstNames = append(dstNames, filepath.Base(f))
		}
		if len(srcNames) == 0 || !slices.Equal(srcNames, dstNames) {
			t.Errorf("%s holds %v, %s holds %v: run make manifests", pair[0], srcNames, pair[1], dstNames)
			continue
		}
		for _, n := range srcNames {
			sameFile(t, filepath.Join(root, pair[0], n), filepath.Join(root, pair[1], n))
		}
	}
	sameFile(t, filepath.Join(root, "config/grafana/infera-node-dashboard.json"), filepath.Join(root, "charts/temper/files/infera-node-dashboard.json"))

	// And the render installs exactly those CRDs, intact.
	objs := decodeAll(t, render(t, caseNamed(t, "default")))
	crds := findAll[*apiextensionsv1.CustomResourceDefinition](objs)
	if len(crds) != 3 {
		t.Errorf("render has %d CRDs, want 3", len(crds))
	}
	dash := find[*corev1.ConfigMap](t, objs, "infera-grafana-dashboard")
	want, _ := os.ReadFile(filepath.Join(root, "config/grafana/infera-node-dashboard.json"))
	if dash.Data["infera-node-dashboard.json"] != strings.TrimRight(string(want), "\n") || dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap differs from config/grafana (labels %v)", dash.Labels)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ (%v, %v): run make manifests", a, b, err1, err2)
	}
}

func TestPriorityClasses(t *testing.T) {
	objs := decodeAll(t, render(t, caseNamed(t, "default")))
	pcs := findAll[*schedulingv1.PriorityClass](objs)
	if len(pcs) != len(wellknown.PriorityClasses()) {
		t.Fatalf("render has %d PriorityClasses, want %d", len(pcs), len(wellknown.PriorityClasses()))
	}
	for _, want := range wellknown.PriorityClasses() {
		pc := find[*schedulingv1.PriorityClass](t, objs, want.Name)
		if pc.Value != want.Value || pc.GlobalDefault {
			t.Errorf("%s: value %d globalDefault %v, want %d", pc.Name, pc.Value, pc.GlobalDefault, want.Value)
		}
		if pc.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("%s is not kept on uninstall", pc.Name)
		}
	}
	minimal := decodeAll(t, render(t, caseNamed(t, "minimal")))
	if n := len(findAll[*schedulingv1.PriorityClass](minimal)); n != 0 {
		t.Errorf("priorityClasses.create=false renders %d PriorityClasses", n)
	}
}

func TestManagerAndWebhook(t *testing.T) {
	c := caseNamed(t, "canary")
	objs := decodeAll(t, render(t, c))
	mwc := find[*admissionregistrationv1.MutatingWebhookConfiguration](t, objs, "infera-mutating-webhook-configuration")
	wh := mwc.Webhooks[0]
	if len(wh.ClientConfig.CABundle) != 0 {
		t.Errorf("the chart renders a caBundle; the manager owns it")
	}
	if wh.ClientConfig.Service.Namespace != c.namespace || *wh.FailurePolicy != admissionregistrationv1.Ignore || *wh.TimeoutSeconds > 2 {
		t.Errorf("webhook %+v", wh)
	}
	excluded := wh.NamespaceSelector.MatchExpressions[0].Values
	if !slices.Equal(excluded, []string{"kube-system", c.namespace}) {
		t.Errorf("webhook excludes %v, want kube-system and the release namespace", excluded)
	}
	dep := find[*appsv1.Deployment](t, objs, "infera-manager")
	if *dep.Spec.Replicas != 2 || *dep.Spec.Template.Spec.SecurityContext.RunAsUser != 65532 {
		t.Errorf("manager replicas %d user %d", *dep.Spec.Replicas, *dep.Spec.Template.Spec.SecurityContext.RunAsUser)
	}
	pdb := find[*policyv1.PodDisruptionBudget](t, objs, "infera-manager")
	if pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}
	cm := find[*corev1.ConfigMap](t, objs, "infera-manager-config")
	if !strings.Contains(cm.Data["config.yaml"], "platformNamespace: "+c.namespace) {
		t.Errorf("manager config does not name the release namespace:\n%s", cm.Data["config.yaml"])
	}
	if k := kinds(objs); k["Deployment"] != 1 {
		t.Errorf("scheduler rendered although disabled: %v", k)
	}

	full := decodeAll(t, render(t, caseNamed(t, "full")))
	sched := find[*appsv1.Deployment](t, full, "infera-scheduler")
	if sched.Spec.Template.Spec.ServiceAccountName != "infera-scheduler" {
		t.Errorf("scheduler service account %s", sched.Spec.Template.Spec.ServiceAccountName)
	}
	scm := find[*corev1.ConfigMap](t, full, "infera-scheduler-config")
	if !strings.Contains(scm.Data["scheduler-config.yaml"], "weight: 5") || strings.Contains(scm.Data["scheduler-config.yaml"], "default-scheduler") {
		t.Errorf("scheduler config:\n%s", scm.Data["scheduler-config.yaml"])
	}
}

func TestCriticalPriorityPolicy(t *testing.T) {
	c := caseNamed(t, "canary")
	objs := decodeAll(t, render(t, c))
	vap := find[*admissionregistrationv1.ValidatingAdmissionPolicy](t, objs, "infera-critical-namespaces")
	if got, want := vap.Spec.Validations[0].Expression, `request.namespace in ["kube-system","payments","temper-ops"]`; got != want {
		t.Errorf("expression %s, want %s", got, want)
	}
	find[*admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, objs, "infera-critical-namespaces")
}

// Bad values fail the install with a message naming the value.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"agent.maxUnavailable=0", "/agent/maxUnavailable"},
		{"agent.maxUnavailable=150%", "/agent/maxUnavailable"},
		{"gateway.agentTimeout=5", "/gateway/agentTimeout"},
		{"gateway.agentMaxConcurrent=0", "/gateway/agentMaxConcurrent"},
		{"agent.canary.value=a/b", "/agent/canary/value"},
		{"manager.replicas=0", "/manager/replicas': minimum: got 0, want 1"},
		{"agent.minReadySeconds=-1", "/agent/minReadySeconds"},
		{"imagePullPolicy=Sometimes", "/imagePullPolicy"},
		{"scheduler.tierLoadMaxAge=three", "/scheduler/tierLoadMaxAge"},
		{"agent.scxLayeredHostPath=usr/bin/scx", "/agent/scxLayeredHostPath"},
		{"criticalPriorityClass.allowedNamespaces[0]=Bad_NS", "/criticalPriorityClass/allowedNamespaces/0"},
		{"agnet.enabled=false", "additional properties 'agnet' not allowed"},
	} {
		t.Run(tc.set, func(t *testing.T) {
			_, err := helm(t, "template", "temper", "charts/temper", "--set", tc.set)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("--set %s: err = %v, want one naming %q", tc.set, err, tc.want)
			}
		})
	}
}

// ServiceMonitors and the PrometheusRule appear only where the Prometheus
// Operator's API exists, and every infera_ metric an alert reads exists.
func TestMonitoring(t *testing.T) {
	def := decodeAll(t, render(t, caseNamed(t, "default")))
	if k := kinds(def); k["ServiceMonitor"] != 0 || k["PrometheusRule"] != 0 {
		t.Errorf("without monitoring.coreos.com/v1 the render has %v", k)
	}
	full := decodeAll(t, render(t, caseNamed(t, "full")))
	if k := kinds(full); k["ServiceMonitor"] != 2 || k["PrometheusRule"] != 1 {
		t.Errorf("with monitoring.coreos.com/v1 the render has %v", k)
	}
	minimal := decodeAll(t, render(t, caseNamed(t, "minimal")))
	if k := kinds(minimal); k["ServiceMonitor"]+k["PrometheusRule"] != 0 || k["ConfigMap"] != 1 {
		t.Errorf("monitoring switched off, the render has %v", k)
	}

	var rule *unstructured.Unstructured
	for _, o := range full {
		if u, ok := o.(*unstructured.Unstructured); ok && u.GetKind() == "PrometheusRule" {
			rule = u
		}
	}
	groups, _, _ := unstructured.NestedSlice(rule.Object, "spec", "groups")
	known := metricNames(t)
	alerts := map[string]bool{}
	metric := regexp.MustCompile(`infera_[a-z_]+`)
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			rm := r.(map[string]any)
			alerts[rm["alert"].(string)] = true
			for _, m := range metric.FindAllString(rm["expr"].(string), -1) {
				if !known[m] {
					t.Errorf("alert %s reads %s, which no component exports", rm["alert"], m)
				}
			}
		}
	}
	for _, a := range []string{"InferaAgentDown", "InferaAgentStale", "InferaSafeModeOn", "InferaEnforcementDegraded", "InferaCgroupDriftStorm", "InferaWebhookErrors"} {
		if !alerts[a] {
			t.Errorf("alert %s missing", a)
		}
	}
}

// metricNames are the metric families the agent and the webhook export.
func metricNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	m, err := telemetry.New(telemetry.Options{Snapshot: func() telemetry.Snapshot {
		return telemetry.Snapshot{Backend: "cgroup", Status: "enforcing/cgroup", SafeMode: true, Cgroup: &telemetry.Cgroup{}, Scheduler: &telemetry.Scheduler{}}
	}})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	rec := &recorder{}
	if _, err := overcommit.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *prometheus.Desc, 16)
	for _, c := range rec.collectors {
		c.Describe(ch)
	}
	close(ch)
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range ch {
		if sm := fq.FindStringSubmatch(d.String()); sm != nil {
			names[sm[1]] = true
		}
	}
	for _, must := range []string{"infera_safe_mode", "infera_overcommit_admissions_total"} {
		if !names[must] {
			t.Fatalf("metric %s not found among %v", must, names)
		}
	}
	return names
}

type recorder struct{ collectors []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return nil
}
func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	r.collectors = append(r.collectors, cs...)
}
func (r *recorder) Unregister(prometheus.Collector) bool { return true }
