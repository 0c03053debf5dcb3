package manager

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/certrotation"
	"github.com/infera-io/temper/webhooks/overcommit"
)

// warningRecorder collects the admission warnings the API server relays.
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func warningClient(t *testing.T) (client.Client, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = rec
	c, err := client.New(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

func createProfile(t *testing.T, p *inferav1alpha1.OvercommitProfile) {
	t.Helper()
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
}

// waitOptedIn waits until the profile controller labelled and annotated ns.
func waitOptedIn(t *testing.T, ns, profile string) {
	t.Helper()
	eventually(t, 20*time.Second, "namespace "+ns+" opted in by "+profile, func() (bool, string) {
		var n corev1.Namespace
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, &n); err != nil {
			return false, err.Error()
		}
		return n.Labels[wellknown.OvercommitLabel] == wellknown.OvercommitEnabledValue &&
			n.Annotations[wellknown.OvercommitProfileAnnotation] == profile, "labels " + strings.Join(mapPairs(n.Labels), ",")
	})
}

func mapPairs(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

type wantContainer struct {
	name     string
	req, lim string
}

func containersOf(p *corev1.Pod) []wantContainer {
	var out []wantContainer
	for _, cs := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			out = append(out, wantContainer{c.Name, cpuRequest(c), cpuLimit(c)})
		}
	}
	return out
}

// TestWebhookRulesOverTLS sends pods through the real API server, which
// calls the webhook over TLS with the self-managed CA bundle, and checks
// every rule of DESIGN.md §5 on what the API server stored.
func TestWebhookRulesOverTLS(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	wc, warnings := warningClient(t)

	createProfile(t, &inferav1alpha1.OvercommitProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "batch-rules"},
		Spec: inferav1alpha1.OvercommitProfileSpec{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "batch-rules"}},
			Ratios: []inferav1alpha1.TierRatio{
				{Tier: "normal", Ratio: 0.5}, {Tier: "low", Ratio: 0.25}, {Tier: "background", Ratio: 0.1},
			},
			FloorMilli: 50,
		},
	})
	createProfile(t, &inferav1alpha1.OvercommitProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "dry-rules"},
		Spec: inferav1alpha1.OvercommitProfileSpec{
			NamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"team": "dry-rules"}},
			Ratios:            []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 0.25}},
			FloorMilli:        50,
			DryRun:            true,
		},
	})
	ensureNamespace(t, "batch-rules", map[string]string{"team": "batch-rules"}, nil)
	ensureNamespace(t, "dry-rules", map[string]string{"team": "dry-rules"}, nil)
	ensureNamespace(t, "plain-rules", nil, nil)
	// Labelled by hand: the webhook must still never act here.
	ensureNamespace(t, "infera-system", nil, nil)
	for _, ns := range []string{metav1.NamespaceSystem, "infera-system"} {
		labelNamespace(t, ns, wellknown.OvercommitLabel, wellknown.OvercommitEnabledValue)
		t.Cleanup(func() { labelNamespace(t, ns, wellknown.OvercommitLabel, "") })
	}
	waitOptedIn(t, "batch-rules", "batch-rules")
	waitOptedIn(t, "dry-rules", "dry-rules")

	always := corev1.ContainerRestartPolicyAlways
	sidecars := podIn("batch-rules", "init-and-sidecar", "infera-low", cpuContainer("app", "1", ""))
	sidecars.Spec.InitContainers = []corev1.Container{cpuContainer("setup", "2", "4"), cpuContainer("proxy", "400m", "1")}
	sidecars.Spec.InitContainers[1].RestartPolicy = &always
	garbage := podIn("batch-rules", "garbage-originals", "infera-low", cpuContainer("app", "1", ""))
	garbage.Annotations = map[string]string{wellknown.OriginalCPURequestsAnnotation: "not json{"}
	preset := podIn("batch-rules", "already-deflated", "infera-low", cpuContainer("app", "1", ""))
	preset.Annotations = map[string]string{wellknown.OriginalCPURequestsAnnotation: `{"app":"4"}`}
	volunteer := podIn("batch-rules", "critical-volunteers-low", "infera-critical", cpuContainer("app", "2", ""))
	volunteer.Annotations = map[string]string{wellknown.TierAnnotation: "low"}

	tests := []struct {
		name     string
		pod      *corev1.Pod
		want     []wantContainer
		wantOrig map[string]string // nil: no annotation (unless rawOrig)
		wantWarn string
		rawOrig  string // the annotation must stay exactly this
	}{
		{"normal by QoS, limit kept", podIn("batch-rules", "normal", "", cpuContainer("app", "1", "2")),
			[]wantContainer{{"app", "500m", "2"}}, map[string]string{"app": "1"}, "", ""},
		{"low by PriorityClass", podIn("batch-rules", "low", "infera-low", cpuContainer("a", "2", ""), cpuContainer("b", "", "")),
			[]wantContainer{{"a", "500m", ""}, {"b", "", ""}}, map[string]string{"a": "2"}, "", ""},
		{"background clamps at the floor", podIn("batch-rules", "background", "infera-background", cpuContainer("app", "300m", "")),
			[]wantContainer{{"app", "50m", ""}}, map[string]string{"app": "300m"}, "", ""},
		{"below the floor is untouched", podIn("batch-rules", "tiny", "infera-background", cpuContainer("app", "40m", "")),
			[]wantContainer{{"app", "40m", ""}}, nil, "", ""},
		{"high has no ratio in this profile", podIn("batch-rules", "high", "infera-high", cpuContainer("app", "1", "")),
			[]wantContainer{{"app", "1", ""}}, nil, "", ""},
		{"critical is never touched", podIn("batch-rules", "critical", "infera-critical", cpuContainer("app", "2", "2")),
			[]wantContainer{{"app", "2", "2"}}, nil, "", ""},
		{"critical volunteering low is still never touched", volunteer,
			[]wantContainer{{"app", "2", ""}}, nil, "", ""},
		{"system is never touched", podIn("batch-rules", "system", "system-cluster-critical", cpuContainer("app", "2", "")),
			[]wantContainer{{"app", "2", ""}}, nil, "", ""},
		{"init containers and sidecars", sidecars,
			[]wantContainer{{"setup", "500m", "4"}, {"proxy", "100m", "1"}, {"app", "250m", ""}},
			map[string]string{"setup": "2", "proxy": "400m", "app": "1"}, "", ""},
		{"garbage in the originals annotation is a no-op", garbage,
			[]wantContainer{{"app", "1", ""}}, nil, "not a JSON object of container name to CPU quantity", "not json{"},
		{"already deflated is a no-op", preset,
			[]wantContainer{{"app", "1", ""}}, map[string]string{"app": "4"}, "", ""},
		{"absurd quantity is left alone, others deflate", podIn("batch-rules", "absurd", "infera-low", cpuContainer("huge", "5000000", ""), cpuContainer("app", "1", "")),
			[]wantContainer{{"huge", "5M", ""}, {"app", "250m", ""}}, map[string]string{"app": "1"}, "more than 1000000 cores", ""},
		{"dryRun only annotates", podIn("dry-rules", "dry", "infera-low", cpuContainer("app", "2", "")),
			[]wantContainer{{"app", "2", ""}}, map[string]string{"app": "2"}, "", ""},
		{"namespace not opted in", podIn("plain-rules", "plain", "infera-low", cpuContainer("app", "2", "")),
			[]wantContainer{{"app", "2", ""}}, nil, "", ""},
		{"kube-system even when labelled", podIn(metav1.NamespaceSystem, "kube-system-labelled", "infera-low", cpuContainer("app", "2", "")),
			[]wantContainer{{"app", "2", ""}}, nil, "", ""},
		{"platform namespace even when labelled", podIn("infera-system", "platform-labelled", "infera-low", cpuContainer("app", "2", "")),
			[]wantContainer{{"app", "2", ""}}, nil, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ws := admit(t, wc, warnings, tc.pod)
			if tc.rawOrig != "" {
				if v := got.Annotations[wellknown.OriginalCPURequestsAnnotation]; v != tc.rawOrig {
					t.Errorf("%s = %q, want it left as %q", wellknown.OriginalCPURequestsAnnotation, v, tc.rawOrig)
				}
				delete(got.Annotations, wellknown.OriginalCPURequestsAnnotation)
			}
			checkPod(t, got, tc.want, tc.wantOrig)
			checkWarnings(t, ws, tc.wantWarn)
		})
	}

	t.Run("pod-level resources are left alone with a warning", func(t *testing.T) {
		warnings.take()
		p := podIn("batch-rules", "pod-level", "infera-low", cpuContainer("app", "", ""))
		p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
		if err := wc.Create(ctx, p); err != nil {
			t.Skipf("the API server refuses pod-level resources here (%v)", err)
		}
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
		var got corev1.Pod
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
			t.Fatal(err)
		}
		if q := got.Spec.Resources.Requests[corev1.ResourceCPU]; q.String() != "2" {
			t.Errorf("pod-level request = %s, want 2", q.String())
		}
		checkPod(t, &got, []wantContainer{{"app", "", ""}}, nil)
		if ws := strings.Join(warnings.take(), "\n"); !strings.Contains(ws, "pod-level") {
			t.Errorf("warnings %q do not mention pod-level resources", ws)
		}
	})
}

// admit creates pod through the warning-recording client and returns the
// pod as stored and the admission warnings it earned.
func admit(t *testing.T, wc client.Client, warnings *warningRecorder, pod *corev1.Pod) (*corev1.Pod, string) {
	t.Helper()
	ctx := context.Background()
	warnings.take()
	p := pod.DeepCopy()
	if err := wc.Create(ctx, p); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	var got corev1.Pod
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), &got); err != nil {
		t.Fatal(err)
	}
	return &got, strings.Join(warnings.take(), "\n")
}

// checkWarnings wants want among the warnings, or no overcommit warning
// when want is empty.
func checkWarnings(t *testing.T, ws, want string) {
	t.Helper()
	if want != "" && !strings.Contains(ws, want) {
		t.Errorf("warnings %q do not contain %q", ws, want)
	}
	if want == "" && strings.Contains(ws, "overcommit") {
		t.Errorf("unexpected warnings %q", ws)
	}
}

// checkPod compares the stored pod's containers and originals annotation.
func checkPod(t *testing.T, got *corev1.Pod, want []wantContainer, wantOrig map[string]string) {
	t.Helper()
	if diff := cmp.Diff(want, containersOf(got), cmp.AllowUnexported(wantContainer{})); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
	v, has := got.Annotations[wellknown.OriginalCPURequestsAnnotation]
	switch {
	case wantOrig == nil && has:
		t.Errorf("unexpected %s=%s", wellknown.OriginalCPURequestsAnnotation, v)
	case wantOrig != nil && !has:
		t.Errorf("missing %s", wellknown.OriginalCPURequestsAnnotation)
	case wantOrig != nil:
		var m map[string]string
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			t.Fatalf("%s=%q: %v", wellknown.OriginalCPURequestsAnnotation, v, err)
		}
		if diff := cmp.Diff(wantOrig, m); diff != "" {
			t.Errorf("originals (-want +got):\n%s", diff)
		}
	}
}

func labelNamespace(t *testing.T, name, key, value string) {
	t.Helper()
	var ns corev1.Namespace
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &ns); err != nil {
		t.Fatal(err)
	}
	before := ns.DeepCopy()
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	if value == "" {
		delete(ns.Labels, key)
	} else {
		ns.Labels[key] = value
	}
	if err := env.Client.Patch(context.Background(), &ns, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// reviewDirect posts an AdmissionReview straight to the webhook over TLS,
// trusting the CA bundle from the certificate Secret: what the API server
// would send, minus its namespaceSelector.
func reviewDirect(t *testing.T, port int32, ns string, raw []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	var s corev1.Secret
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: configv1alpha1.DefaultPlatformNamespace, Name: configv1alpha1.DefaultWebhookSecretName}, &s); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.Data[certrotation.CABundleKey])
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "direct", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", port, overcommit.Path), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if out.Response == nil {
		t.Fatal("no response")
	}
	return out.Response
}

// TestWebhookExemptionsInCode bypasses the API server's namespaceSelector:
// the handler itself refuses kube-system and the platform namespace even
// when they are labelled, and answers garbage with an allow, never a deny.
func TestWebhookExemptionsInCode(t *testing.T) {
	m := startManager(t, nil)
	ensureNamespace(t, "infera-system", nil, nil)
	for _, ns := range []string{metav1.NamespaceSystem, "infera-system", "direct-opted-in"} {
		ensureNamespace(t, ns, nil, nil)
		labelNamespace(t, ns, wellknown.OvercommitLabel, wellknown.OvercommitEnabledValue)
		t.Cleanup(func() { labelNamespace(t, ns, wellknown.OvercommitLabel, "") })
	}
	direct := podIn("", "direct", "infera-low", cpuContainer("app", "2", ""))
	prio := wellknown.DefaultLowMinPriority // what the API server's Priority admission would set
	direct.Spec.Priority = &prio
	pod, err := json.Marshal(direct)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the handler's cache sees the label", func() (bool, string) {
		r := reviewDirect(t, m.Port, "direct-opted-in", pod)
		return len(r.Patch) > 0, "no patch yet"
	})
	for _, ns := range []string{metav1.NamespaceSystem, "infera-system"} {
		if r := reviewDirect(t, m.Port, ns, pod); !r.Allowed || len(r.Patch) > 0 {
			t.Errorf("%s: allowed=%v patch=%s, want allowed and unpatched", ns, r.Allowed, r.Patch)
		}
	}
	r := reviewDirect(t, m.Port, "direct-opted-in", []byte(`{"spec":{"containers":"not a list"}}`))
	if !r.Allowed || len(r.Patch) > 0 || len(r.Warnings) == 0 {
		t.Errorf("garbage pod: allowed=%v patch=%s warnings=%v, want allowed, unpatched, warned", r.Allowed, r.Patch, r.Warnings)
	}
}
