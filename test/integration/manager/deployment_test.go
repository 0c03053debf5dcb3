package manager

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/test/envtest"
)

// startControllerManager runs bin/kube-controller-manager with only the
// Deployment and ReplicaSet controllers, so Deployments create pods the way
// they do in a cluster. It skips the test when the binary is missing.
func startControllerManager(t *testing.T) {
	t.Helper()
	bin := filepath.Join(envtest.BinDir(env.Root), "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("%s is missing: build it from hack/tools/controlplane (k8s.io/kubernetes/cmd/kube-controller-manager) to run Deployment-created pods", bin)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--kubeconfig="+env.Kubeconfig,
		"--controllers=deployment,replicaset",
		"--leader-elect=false",
		"--secure-port=0",
		"--concurrent-deployment-syncs=2", "--concurrent-replicaset-syncs=2",
	)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("kube-controller-manager output:\n%s", logs.String())
		}
	})
}

// TestDeploymentCreatedPods: pods a Deployment creates (through its
// ReplicaSet, with generateName and an owner reference) are deflated in an
// opted-in namespace and untouched elsewhere, exactly like bare pods.
func TestDeploymentCreatedPods(t *testing.T) {
	startControllerManager(t)
	startManager(t, nil)
	ctx := context.Background()
	ensureNamespace(t, "deploy-in", map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}, nil)
	ensureNamespace(t, "deploy-out", nil, nil)

	for _, tc := range []struct {
		ns, class string
		want      []wantContainer
		deflated  bool
	}{
		{"deploy-in", "infera-low", []wantContainer{{"app", "1", "4"}}, true},
		{"deploy-in", "infera-critical", []wantContainer{{"app", "2", "4"}}, false},
		{"deploy-out", "infera-low", []wantContainer{{"app", "2", "4"}}, false},
	} {
		t.Run(tc.ns+"/"+tc.class, func(t *testing.T) {
			replicas := int32(2)
			labels := map[string]string{"app": "d-" + tc.class}
			d := &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Namespace: tc.ns, Name: "d-" + tc.class},
				Spec: appsv1.DeploymentSpec{
					Replicas: &replicas,
					Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: labels},
						Spec: corev1.PodSpec{
							PriorityClassName: tc.class,
							Containers:        []corev1.Container{cpuContainer("app", "2", "4")},
						},
					},
				},
			}
			if err := env.Client.Create(ctx, d); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = env.Client.Delete(context.Background(), d) })
			var pods corev1.PodList
			eventually(t, 60*time.Second, "the Deployment's pods", func() (bool, string) {
				if err := env.Client.List(ctx, &pods, client.InNamespace(tc.ns), client.MatchingLabels(labels)); err != nil {
					return false, err.Error()
				}
				return len(pods.Items) == 2, fmt.Sprintf("%d pods", len(pods.Items))
			})
			for i := range pods.Items {
				p := &pods.Items[i]
				if len(p.OwnerReferences) == 0 || p.OwnerReferences[0].Kind != "ReplicaSet" {
					t.Errorf("pod %s is not owned by a ReplicaSet: %+v", p.Name, p.OwnerReferences)
				}
				var orig map[string]string
				if tc.deflated {
					orig = map[string]string{"app": "2"}
				}
				checkPod(t, p, tc.want, orig)
			}
		})
	}
}
