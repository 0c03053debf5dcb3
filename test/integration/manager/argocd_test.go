package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/test/argocdhealth"
	"github.com/infera-io/temper/test/envtest"
)

// argoCDFieldManager is the field manager Argo CD's application controller
// applies with when a sync uses server-side apply.
const argoCDFieldManager = "argocd-controller"

// health runs the shipped Argo CD health check of obj's kind against the
// live object as the API server returns it.
func health(t *testing.T, obj client.Object) argocdhealth.Status {
	t.Helper()
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(inferav1alpha1.SchemeGroupVersion.WithKind(kindOf(obj)))
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), u); err != nil {
		t.Fatal(err)
	}
	st, err := argocdhealth.RunFile(argocdhealth.ScriptPath(env.Root, inferav1alpha1.SchemeGroupVersion.Group, u.GetKind()), u.Object)
	if err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return st
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *inferav1alpha1.InferaPolicy:
		return "InferaPolicy"
	case *inferav1alpha1.OvercommitProfile:
		return "OvercommitProfile"
	case *inferav1alpha1.NodeQoSReport:
		return "NodeQoSReport"
	}
	panic(fmt.Sprintf("no health check for %T", obj))
}

// waitHealth waits until the live object's Argo CD health is want and
// returns it.
func waitHealth(t *testing.T, obj client.Object, want string) argocdhealth.Status {
	t.Helper()
	var st argocdhealth.Status
	eventually(t, 20*time.Second, fmt.Sprintf("%s %s %s", kindOf(obj), obj.GetName(), want), func() (bool, string) {
		st = health(t, obj)
		return st.Status == want, fmt.Sprintf("%+v", st)
	})
	return st
}

// TestArgoCDHealthOfLiveObjects runs the shipped Lua health checks, the way
// Argo CD runs them, on objects the real manager reconciles in envtest:
// missing status and a spec the manager has not observed yet are
// Progressing, Ready=True is Healthy, Ready=False is Degraded.
func TestArgoCDHealthOfLiveObjects(t *testing.T) {
	ctx := context.Background()
	createNode(t, "health-fresh", map[string]string{"health": "yes"}, nil)
	createNode(t, "health-broken", nil, nil)
	annotateNode(t, "health-fresh", map[string]string{wellknown.TierLoadAnnotation: tierLoad(t, time.Now(), 1, map[wellknown.Tier]wellknown.TierUsage{})})
	annotateNode(t, "health-broken", map[string]string{wellknown.TierLoadAnnotation: "{not json"})
	ensureNamespace(t, "health-ns", map[string]string{"health": "yes"}, nil)

	// Objects created while no manager runs have no status: Progressing.
	good := policy("health-good", map[string]string{"health": "yes"}, false)
	bad := policy("health-bad", nil, false)
	bad.Spec.NodeSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "health", Operator: metav1.LabelSelectorOpIn}}
	goodProfile := profile("health-good", map[string]string{"health": "yes"})
	badProfile := profile("health-bad", nil)
	badProfile.Spec.NamespaceSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "health", Operator: metav1.LabelSelectorOpNotIn}}
	report := &inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{Name: "health-fresh"}}
	for _, obj := range []client.Object{good, bad, goodProfile, badProfile, report} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatalf("create %s %s: %v", kindOf(obj), obj.GetName(), err)
		}
		if st := health(t, obj); st.Status != "Progressing" || !strings.Contains(st.Message, "report status") {
			t.Errorf("%s %s without status: %+v, want Progressing", kindOf(obj), obj.GetName(), st)
		}
	}

	// Cleanups run last-in first-out: delete while a manager still runs,
	// so the finalizers are released. Not the report: its Node still
	// exists, so the running manager recreates it (it belongs to the Node).
	cleanup := func() {
		for _, obj := range []client.Object{good, bad, goodProfile, badProfile} {
			deleteAndWaitGone(t, obj)
		}
	}
	m := startManager(t, nil)
	t.Cleanup(cleanup)
	brokenReport := &inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{Name: "health-broken"}}
	for _, tc := range []struct {
		obj    client.Object
		want   string
		reason string
	}{
		{good, "Healthy", inferav1alpha1.ReasonReconciled},
		{goodProfile, "Healthy", inferav1alpha1.ReasonReconciled},
		{report, "Healthy", inferav1alpha1.ReasonReconciled},
		{bad, "Degraded", inferav1alpha1.ReasonInvalidSelector},
		{badProfile, "Degraded", inferav1alpha1.ReasonInvalidSelector},
		{brokenReport, "Degraded", inferav1alpha1.ReasonMalformedTierLoad},
	} {
		st := waitHealth(t, tc.obj, tc.want)
		if !strings.HasPrefix(st.Message, tc.reason+": ") {
			t.Errorf("%s %s: message %q does not start with the Ready reason %s", kindOf(tc.obj), tc.obj.GetName(), st.Message, tc.reason)
		}
		t.Logf("%s %s: %s (%s)", kindOf(tc.obj), tc.obj.GetName(), st.Status, st.Message)
	}

	// A spec change the manager has not observed yet is Progressing, until
	// it catches up.
	m.Stop(t)
	for _, obj := range []client.Object{good, goodProfile} {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		before := obj.DeepCopyObject().(client.Object)
		switch o := obj.(type) {
		case *inferav1alpha1.InferaPolicy:
			o.Spec.SafeMode = true
		case *inferav1alpha1.OvercommitProfile:
			o.Spec.DryRun = true
		}
		if err := env.Client.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
			t.Fatal(err)
		}
		st := health(t, obj)
		if st.Status != "Progressing" || !strings.Contains(st.Message, fmt.Sprintf("observe generation %d", obj.GetGeneration())) {
			t.Errorf("%s %s after a spec change with the manager down: %+v, want Progressing", kindOf(obj), obj.GetName(), st)
		}
	}
	startManager(t, nil)
	t.Cleanup(cleanup)
	waitHealth(t, good, "Healthy")
	waitHealth(t, goodProfile, "Healthy")
}

// TestArgoCDSamplesHaveNoDrift applies config/samples the way Argo CD syncs
// with server-side apply, lets the manager reconcile them, and checks that
// a second sync changes nothing: a server-side-apply dry run of each sample
// with Argo CD's field manager equals the live object apart from status and
// bookkeeping metadata, and kubectl diff exits 0.
func TestArgoCDSamplesHaveNoDrift(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	// What the samples select: a canary node, a batch namespace, and the
	// node the NodeQoSReport sample is named after.
	createNode(t, "worker-1", map[string]string{"temper.example/canary": "true"}, nil)
	ensureNamespace(t, "samples-batch", map[string]string{"team": "batch"}, nil)

	dir := filepath.Join(env.Root, "config", "samples")
	files, err := filepath.Glob(filepath.Join(dir, "infera_*.yaml"))
	if err != nil || len(files) != 3 {
		t.Fatalf("samples: %v, %v", files, err)
	}
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		file string
		obj  *unstructured.Unstructured
		res  dynamic.ResourceInterface
	}
	var samples []sample
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(b, &obj.Object); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		mapping, err := env.Client.RESTMapper().RESTMapping(obj.GroupVersionKind().GroupKind(), obj.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample{file: f, obj: obj, res: dyn.Resource(mapping.Resource)})
	}
	apply := func(s sample, dryRun bool) *unstructured.Unstructured {
		t.Helper()
		opts := metav1.ApplyOptions{FieldManager: argoCDFieldManager, Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		out, err := s.res.Apply(ctx, s.obj.GetName(), s.obj.DeepCopy(), opts)
		if err != nil {
			t.Fatalf("apply %s: %v", filepath.Base(s.file), err)
		}
		return out
	}
	for _, s := range samples {
		apply(s, false)
		t.Cleanup(func() {
			_ = s.res.Delete(context.Background(), s.obj.GetName(), metav1.DeleteOptions{})
		})
	}
	// Reconciled: every sample Healthy by its own health check (finalizers,
	// status, node annotations and the NodeQoSReport's owner are in place).
	for _, s := range samples {
		var obj client.Object
		switch s.obj.GetKind() {
		case "InferaPolicy":
			obj = &inferav1alpha1.InferaPolicy{}
		case "OvercommitProfile":
			obj = &inferav1alpha1.OvercommitProfile{}
		default:
			obj = &inferav1alpha1.NodeQoSReport{}
			// The report mirrors a node without an agent: not Healthy, but
			// reconciled once it has a status.
		}
		obj.SetName(s.obj.GetName())
		if _, ok := obj.(*inferav1alpha1.NodeQoSReport); ok {
			eventually(t, 20*time.Second, "the NodeQoSReport sample is reconciled", func() (bool, string) {
				st := health(t, obj)
				return st.Status != "Progressing", fmt.Sprintf("%+v", st)
			})
			continue
		}
		waitHealth(t, obj, "Healthy")
	}
	time.Sleep(time.Second) // let the manager settle any follow-up write

	for _, s := range samples {
		live, err := s.res.Get(ctx, s.obj.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		dry := apply(s, true)
		if diff := cmp.Diff(withoutNoise(live), withoutNoise(dry)); diff != "" {
			t.Errorf("%s: a re-sync by Argo CD would change the live object (-live +dry-run apply):\n%s", filepath.Base(s.file), diff)
		}
		if live.GetGeneration() != dry.GetGeneration() {
			t.Errorf("%s: the dry-run apply bumps the generation %d → %d", filepath.Base(s.file), live.GetGeneration(), dry.GetGeneration())
		}
	}
	if bin := filepath.Join(envtest.BinDir(env.Root), "kubectl"); fileExists(bin) {
		args := []string{"diff", "--server-side", "--force-conflicts", "--field-manager=" + argoCDFieldManager}
		for _, f := range files {
			args = append(args, "-f", f)
		}
		if out, err := env.Kubectl(ctx, args...); err != nil {
			t.Errorf("kubectl diff of config/samples reports drift: %v\n%s", err, out)
		}
	} else {
		t.Log("bin/kubectl not built: kubectl diff skipped")
	}
}

// withoutNoise drops what a GitOps diff ignores: status and the metadata
// the API server and controllers keep (managedFields, resourceVersion, uid,
// creationTimestamp). Generation is compared separately.
func withoutNoise(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp", "generation"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	return c.Object
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
