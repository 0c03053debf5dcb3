package overcommit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// mapReader is the smallest client.Reader a benchmark needs: the manager
// reads the same objects from its informer cache, which is a map lookup too.
type mapReader struct {
	ns       map[string]*corev1.Namespace
	profiles map[string]*inferav1alpha1.OvercommitProfile
}

func (m mapReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	switch o := obj.(type) {
	case *corev1.Namespace:
		if n, ok := m.ns[key.Name]; ok {
			n.DeepCopyInto(o)
			return nil
		}
	case *inferav1alpha1.OvercommitProfile:
		if p, ok := m.profiles[key.Name]; ok {
			p.DeepCopyInto(o)
			return nil
		}
	}
	return apierrors.NewNotFound(corev1.Resource("object"), key.Name)
}

func (m mapReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	if _, ok := list.(*inferav1alpha1.InferaPolicyList); ok {
		return nil
	}
	return fmt.Errorf("unexpected list %T", list)
}

// benchPod is a Deployment-style pod: two app containers and a sidecar.
func benchPod() *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	prio := wellknown.DefaultLowMinPriority
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-7d9f-", Namespace: "batch", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			PriorityClassName: "infera-low", Priority: &prio,
			InitContainers: []corev1.Container{ctr("proxy", "200m", "1")},
			Containers:     []corev1.Container{ctr("app", "2", "4"), ctr("metrics", "100m", "")},
		},
	}
	p.Spec.InitContainers[0].RestartPolicy = &always
	return p
}

func benchHandler() *Handler {
	return &Handler{
		Reader: mapReader{
			ns: map[string]*corev1.Namespace{"batch": {ObjectMeta: metav1.ObjectMeta{Name: "batch",
				Labels:      map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue},
				Annotations: map[string]string{wellknown.OvercommitProfileAnnotation: "p"}}}},
			profiles: map[string]*inferav1alpha1.OvercommitProfile{"p": {ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: inferav1alpha1.OvercommitProfileSpec{Ratios: []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 0.5}}, FloorMilli: 25}}},
		},
		PlatformNamespace: "infera-system",
		Thresholds:        tiering.DefaultThresholds(),
	}
}

func BenchmarkCompute(b *testing.B) {
	pod := benchPod()
	s := DefaultSettings()
	th := []tiering.Thresholds{tiering.DefaultThresholds()}
	b.ReportAllocs()
	for b.Loop() {
		if p := Compute(pod, s, th); len(p.Changes) != 3 {
			b.Fatalf("changes = %d", len(p.Changes))
		}
	}
}

// BenchmarkHandle is one admission request through the handler, decoding
// included, without HTTP and TLS (test/bench/webhook measures those).
func BenchmarkHandle(b *testing.B) {
	h := benchHandler()
	raw, err := json.Marshal(benchPod())
	if err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "batch",
		Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
	}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := h.Handle(ctx, req); len(r.Patches) != 4 {
			b.Fatalf("patches = %d (%s)", len(r.Patches), r.Result.Message)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("a second registration must reuse the counters: %v", err)
	}
	h := benchHandler()
	h.Metrics = again
	raw, err := json.Marshal(benchPod())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{"batch", "batch", "kube-system", "other"} {
		h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: ns,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		}})
	}
	for result, want := range map[string]float64{ResultDeflated: 2, ResultExempt: 1, ResultNotOptedIn: 1, ResultSkipped: 0} {
		if got := testutil.ToFloat64(m.admissions.WithLabelValues(result)); got != want {
			t.Errorf("admissions{result=%q} = %v, want %v", result, got, want)
		}
	}
	// Each admission takes 2 → 1, 100m → 50m and 200m → 100m off: 1150m.
	if got := testutil.ToFloat64(m.deflated.WithLabelValues("batch")); got != 2300 {
		t.Errorf("deflated millicores in batch = %v, want 2300", got)
	}
}
