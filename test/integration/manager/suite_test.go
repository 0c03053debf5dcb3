package manager

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2/textlogger"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	managerapp "github.com/infera-io/temper/cmd/infera-manager/app"
	"github.com/infera-io/temper/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	os.Exit(envtest.RunMain(m, envtest.Options{PriorityClasses: true}, func(e *envtest.Env) { env = e }))
}

func testLogger() logr.Logger {
	if os.Getenv("TEMPER_TEST_LOG") == "" {
		return logr.Discard()
	}
	return textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(2)))
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// running is a manager started by startManager.
type running struct {
	Port   int32
	cancel context.CancelFunc
	done   chan error
}

// Stop stops the manager and waits for it.
func (r *running) Stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("managerapp.Run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("manager did not stop within 30s")
	}
}

// startManager runs the manager in-process the way make run does: webhook
// URL on 127.0.0.1, self-managed certificates, no leader election. mutate
// adjusts the configuration. It returns once the API server calls the
// webhook.
func startManager(t *testing.T, mutate func(*configv1alpha1.ManagerConfiguration)) *running {
	t.Helper()
	port := freePort(t)
	off := false
	cfg := configv1alpha1.ManagerConfiguration{
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		LeaderElection:         configv1alpha1.LeaderElectionConfiguration{Enabled: &off},
		Webhook: configv1alpha1.WebhookConfiguration{
			Host: "127.0.0.1", Port: &port, URL: fmt.Sprintf("https://127.0.0.1:%d", port),
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Port: port, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		r.done <- managerapp.Run(ctx, managerapp.Options{RestConfig: env.Config, Config: cfg, Log: testLogger(), Ready: func() { close(ready) },
			SkipControllerNameValidation: true})
	}()
	select {
	case <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("managerapp.Run returned before it was ready: %v", err)
	case <-time.After(90 * time.Second):
		cancel()
		t.Fatal("manager not ready within 90s")
	}
	t.Cleanup(func() { r.Stop(t) })
	waitWebhookServing(t)
	return r
}

const probeNamespace = "probe-opted-in"

// waitWebhookServing polls server-side dry-run creates of a pod in an
// opted-in namespace until the API server calls the (new) webhook: the
// configuration reaches the API server's informer asynchronously.
func waitWebhookServing(t *testing.T) {
	t.Helper()
	ensureNamespace(t, probeNamespace, map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}, nil)
	eventually(t, 30*time.Second, "the API server calls the webhook", func() (bool, string) {
		p := bestEffortPod("probe", cpuContainer("app", "1", ""))
		p.Namespace = probeNamespace
		if err := env.Client.Create(context.Background(), p, client.DryRunAll); err != nil {
			return false, err.Error()
		}
		_, ok := p.Annotations[wellknown.OriginalCPURequestsAnnotation]
		return ok, "pod not annotated yet"
	})
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ensureNamespace(t *testing.T, name string, labels, annotations map[string]string) *corev1.Namespace {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	err := env.Client.Create(context.Background(), ns)
	if apierrors.IsAlreadyExists(err) {
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, ns); err != nil {
			t.Fatal(err)
		}
		return ns
	}
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func cpuContainer(name, req, lim string) corev1.Container {
	c := corev1.Container{Name: name, Image: "registry.invalid/app:1"}
	if req != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req)}
	}
	if lim != "" {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim)}
	}
	return c
}

// bestEffortPod returns a pod with no PriorityClass (tiered by QoS class).
func bestEffortPod(name string, cs ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: cs}}
}

func podIn(ns, name, priorityClass string, cs ...corev1.Container) *corev1.Pod {
	p := bestEffortPod(name, cs...)
	p.Namespace = ns
	p.Spec.PriorityClassName = priorityClass
	return p
}

func cpuRequest(c corev1.Container) string {
	q, ok := c.Resources.Requests[corev1.ResourceCPU]
	if !ok {
		return ""
	}
	return q.String()
}

func cpuLimit(c corev1.Container) string {
	q, ok := c.Resources.Limits[corev1.ResourceCPU]
	if !ok {
		return ""
	}
	return q.String()
}
