package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/schedulerplugin"
	"github.com/infera-io/temper/schedulerplugin/schedulertest"
	"github.com/infera-io/temper/test/envtest"
)

// TestLoadConfigArgsAreTyped: with the args in kube-scheduler's scheme, its
// own loader decodes them strictly into a defaulted *InferaDensityArgs, also
// for a profile that enables the plugin without a pluginConfig entry.
func TestLoadConfigArgsAreTyped(t *testing.T) {
	for file, wantReserve := range map[string]int64{
		filepath.Join("..", "..", "config", "scheduler", "scheduler-config.yaml"): 2000,
		filepath.Join("testdata", "no-plugin-config.yaml"):                        configv1alpha1.DefaultFenceReserveMilli,
	} {
		cfg, err := options.LoadConfigFromFile(logr.Discard(), file)
		if err != nil {
			t.Fatalf("load %s: %v", file, err)
		}
		var args *configv1alpha1.InferaDensityArgs
		for _, p := range cfg.Profiles {
			for _, pc := range p.PluginConfig {
				if pc.Name == schedulerplugin.Name {
					a, ok := pc.Args.(*configv1alpha1.InferaDensityArgs)
					if !ok {
						t.Fatalf("%s: args are %T, want *InferaDensityArgs", file, pc.Args)
					}
					args = a
				}
			}
		}
		if args == nil {
			t.Fatalf("%s: no %s pluginConfig after loading", file, schedulerplugin.Name)
		}
		if args.FenceReserveMilli == nil || *args.FenceReserveMilli != wantReserve || args.TierLoadMaxAge == nil || args.PriorityMapping == nil {
			t.Errorf("%s: args not defaulted: %+v", file, args)
		}
	}
	if _, err := options.LoadConfigFromFile(logr.Discard(), filepath.Join("testdata", "unknown-field.yaml")); err == nil || !strings.Contains(err.Error(), `unknown field "fenceReserveMili"`) {
		t.Errorf("loading a misspelt field: %v, want an unknown field error", err)
	}
}

// TestStart runs infera-scheduler (this test binary running main) against
// a real kube-apiserver: a configuration with bad plugin args fails the
// start with an error naming the field, and the shipped configuration (and
// one that leaves the args to their defaults) starts and binds a pod.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	config := func(t *testing.T, src string) string {
		path, err := schedulertest.WriteConfig(src, t.TempDir(), schedulertest.ConfigOverrides{Kubeconfig: env.Kubeconfig})
		if err != nil {
			t.Fatal(err)
		}
		return path
	}

	bad := map[string][]string{ // file → what the error must say
		"reserve-negative.yaml": {`fenceReserveMilli: Invalid value: -1`, schedulerplugin.Name},
		"unknown-field.yaml":    {`unknown field "fenceReserveMili"`, "pluginConfig[0]"},
		"mapping-order.yaml":    {`priorityMapping.high: Invalid value: 1000000: must be below critical`},
		"max-age-type.yaml":     {`invalid duration "forever"`, schedulerplugin.Name},
	}
	for file, want := range bad {
		t.Run(file, func(t *testing.T) {
			out, err := runScheduler(t, config(t, filepath.Join("testdata", file)), nil)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("scheduler with %s: %v, want a failed start; output:\n%s", file, err, out)
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, tail(out))
				}
			}
		})
	}

	good := map[string]string{
		"shipped":          filepath.Join("..", "..", "config", "scheduler", "scheduler-config.yaml"),
		"no-plugin-config": filepath.Join("testdata", "no-plugin-config.yaml"),
	}
	for name, src := range good {
		t.Run(name, func(t *testing.T) {
			out, err := runScheduler(t, config(t, src), func() { bindOne(t, env, name) })
			if err != nil {
				t.Fatalf("scheduler with %s: %v, want a clean exit after SIGTERM; output:\n%s", name, err, tail(out))
			}
		})
	}
}

// runScheduler runs infera-scheduler with the configuration. Without
// whileUp it waits for the process to exit by itself; with it, it calls
// whileUp while the scheduler runs, then stops it with SIGTERM.
func runScheduler(t *testing.T, config string, whileUp func()) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// --secure-port=0: other schedulers may hold 10259 on this machine.
	cmd := exec.CommandContext(ctx, os.Args[0], "--config", config, "--secure-port=0")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if whileUp != nil {
		whileUp()
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	err := cmd.Wait()
	// klog quotes the error: unescape its quotes for matching.
	return strings.ReplaceAll(out.String(), `\"`, `"`), err
}

// bindOne creates a node and a pod for the infera-scheduler profile and
// waits for the scheduler to bind it.
func bindOne(t *testing.T, env *envtest.Env, name string) {
	t.Helper()
	ctx := context.Background()
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "start-" + name, Labels: map[string]string{corev1.LabelHostname: "start-" + name}}, Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity}}
	if err := localcluster.RegisterNode(ctx, env.Client, node); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), node) })
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "start-" + name, Namespace: metav1.NamespaceDefault},
		Spec: corev1.PodSpec{
			SchedulerName: "infera-scheduler",
			NodeSelector:  map[string]string{corev1.LabelHostname: node.Name},
			Containers:    []corev1.Container{{Name: "app", Image: "registry.invalid/app:never-pulled"}},
		},
	}
	if err := env.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), pod, client.GracePeriodSeconds(0)) })
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)
		return err == nil && pod.Spec.NodeName != "", nil
	})
	if err != nil {
		t.Errorf("pod was not bound by the infera-scheduler profile: %v", err)
	}
}

// tail keeps the end of a long log.
func tail(s string) string {
	if len(s) > 4000 {
		return "...\n" + s[len(s)-4000:]
	}
	return s
}
