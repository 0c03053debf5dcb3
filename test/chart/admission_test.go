package chart

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/infera-io/temper/test/envtest"
)

// The admission policies the chart ships, loaded into a real kube-apiserver
// (envtest) exactly as helm renders them.
func TestAdmissionPolicies(t *testing.T) {
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	admin, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}

	for _, ns := range []string{releaseNamespace, "untrusted", "payments"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// No kube-controller-manager runs: make the default ServiceAccounts the
	// ServiceAccount admission plugin looks for.
	for _, ns := range []string{releaseNamespace, "untrusted", "payments", "kube-system"} {
		_, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	out, err := helm(t, "template", "temper", "charts/temper", "--namespace", releaseNamespace,
		"--set", "criticalPriorityClass.allowedNamespaces={kube-system,payments}",
		"--show-only", "templates/agent-rbac.yaml",
		"--show-only", "templates/critical-priority-policy.yaml",
		"--show-only", "templates/priorityclasses.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range decodeAll(t, out) {
		if err := env.Client.Create(ctx, o); err != nil {
			t.Fatalf("failed to create %T %s: %v", o, o.GetName(), err)
		}
	}

	t.Run("agent patches only its own node", func(t *testing.T) { agentOwnNode(ctx, t, env, admin) })
	t.Run("infera-critical only in trusted namespaces", func(t *testing.T) { criticalNamespaces(ctx, t, admin) })
}

func agentOwnNode(ctx context.Context, t *testing.T, env *envtest.Env, admin kubernetes.Interface) {
	for _, n := range []string{"node-a", "node-b"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        n,
			Labels:      map[string]string{"kubernetes.io/hostname": n},
			Annotations: map[string]string{"example.com/owner": "ops"},
		}}
		if _, err := admin.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The agent pod on node-a, and the token the kubelet would project into
	// it: bound to the pod, hence to its node.
	pod, err := admin.CoreV1().Pods(releaseNamespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "infera-agent-a"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "infera-agent",
			NodeName:           "node-a",
			Containers:         []corev1.Container{{Name: "agent", Image: "infera-agent:test"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent := agentClient(ctx, t, env, admin, &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID})

	// The API server derived the node from the token.
	review, err := agent.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := review.Status.UserInfo.Extra["authentication.kubernetes.io/node-name"]; len(got) != 1 || got[0] != "node-a" {
		t.Fatalf("token user extra %v, want node-name node-a", review.Status.UserInfo.Extra)
	}

	annotate := func(key, value string) []byte {
		return fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, key, value)
	}
	// Policies take effect when the API server has compiled them: wait
	// until the first denial, then every answer is final.
	// (Patches before that went through; what counts is node-b from here on.)
	waitForDenial(ctx, t, agent, "node-b", annotate("infera.io/agent-status", "enforcing/cgroup"), "may not change Node node-b")
	nodeB, err := admin.CoreV1().Nodes().Get(ctx, "node-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, node string
		patch      []byte
		deny       string // empty: allowed
	}{
		{"own node, infera.io annotations", "node-a", fmt.Appendf(nil, `{"metadata":{"annotations":{"infera.io/agent-status":"enforcing/cgroup","infera.io/tier-load":"{\"v\":1}"}}}`), ""},
		{"own node, remove an infera.io annotation", "node-a", []byte(`{"metadata":{"annotations":{"infera.io/agent-status":null}}}`), ""},
		{"other node, infera.io annotation", "node-b", annotate("infera.io/tier-load", "{}"), "infera-agent on node node-a may not change Node node-b"},
		{"own node, foreign annotation", "node-a", annotate("example.com/x", "1"), "only infera.io/ annotations"},
		{"own node, change a foreign annotation", "node-a", annotate("example.com/owner", "agent"), "only infera.io/ annotations"},
		{"own node, drop a foreign annotation", "node-a", []byte(`{"metadata":{"annotations":{"example.com/owner":null}}}`), "only infera.io/ annotations"},
		{"own node, label", "node-a", []byte(`{"metadata":{"labels":{"infera.io/tier":"critical"}}}`), "labels, spec"},
		{"own node, cordon", "node-a", []byte(`{"spec":{"unschedulable":true}}`), "labels, spec"},
	} {
		_, err := agent.CoreV1().Nodes().Patch(ctx, tc.node, types.MergePatchType, tc.patch, metav1.PatchOptions{})
		switch {
		case tc.deny == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.deny != "" && (err == nil || !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.deny)):
			t.Errorf("%s: err = %v, want a denial saying %q", tc.name, err, tc.deny)
		}
	}
	if n, err := admin.CoreV1().Nodes().Get(ctx, "node-b", metav1.GetOptions{}); err != nil || n.ResourceVersion != nodeB.ResourceVersion {
		t.Errorf("node-b changed: %v %v", n.Annotations, err)
	}
	// The policy binds only the agent: an administrator still can.
	if _, err := admin.CoreV1().Nodes().Patch(ctx, "node-b", types.MergePatchType, annotate("example.com/x", "1"), metav1.PatchOptions{}); err != nil {
		t.Errorf("admin patch refused: %v", err)
	}

	// A token with no node binding (a legacy or hand-made token) is refused
	// even for the node it names.
	unbound := agentClient(ctx, t, env, admin, nil)
	_, err = unbound.CoreV1().Nodes().Patch(ctx, "node-a", types.MergePatchType, annotate("infera.io/agent-status", "x"), metav1.PatchOptions{})
	if err == nil || !strings.Contains(err.Error(), "not bound to a node") {
		t.Errorf("unbound token: err = %v, want a denial", err)
	}
}

// agentClient authenticates with a token of the infera-agent ServiceAccount.
func agentClient(ctx context.Context, t *testing.T, env *envtest.Env, admin kubernetes.Interface, bound *authenticationv1.BoundObjectReference) kubernetes.Interface {
	t.Helper()
	tr, err := admin.CoreV1().ServiceAccounts(releaseNamespace).CreateToken(ctx, "infera-agent", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: bound},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitForDenial(ctx context.Context, t *testing.T, c kubernetes.Interface, node string, patch []byte, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
		if err != nil && strings.Contains(err.Error(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy never denied the patch of %s: last err = %v", node, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func criticalNamespaces(ctx context.Context, t *testing.T, admin kubernetes.Interface) {
	create := func(ns, pc string) error {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "p-"},
			Spec: corev1.PodSpec{
				PriorityClassName: pc,
				Containers:        []corev1.Container{{Name: "c", Image: "app:1"}},
			},
		}
		_, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	}
	want := "namespace untrusted may not use PriorityClass infera-critical"
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := create("untrusted", "infera-critical")
		if err != nil && strings.Contains(err.Error(), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("infera-critical in namespace untrusted: err = %v, want a denial saying %q", err, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, tc := range []struct{ ns, pc string }{
		{"payments", "infera-critical"},
		{"kube-system", "infera-critical"},
		{releaseNamespace, "infera-critical"},
		{"untrusted", "infera-high"},
		{"untrusted", ""},
	} {
		if err := create(tc.ns, tc.pc); err != nil {
			t.Errorf("pod with %q in %s refused: %v", tc.pc, tc.ns, err)
		}
	}
}
