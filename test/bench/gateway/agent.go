package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/testcerts"
)

// agentNode is the node whose agent runs (the first one created).
const (
	agentNode       = "bench-node-0000"
	agentServerName = "infera-agent.infera-system.svc"
)

// startAgent creates nPods pods on agentNode, starts bin/infera-agent for
// it (observe-only: this machine's kernel is not the node's) with its gRPC
// API on TLS, and writes the gateway's configuration that reaches it with
// the token of a ServiceAccount bound to infera-gateway's role. It returns
// the configuration's path; the agent stops with ctx.
func startAgent(ctx context.Context, env *envtest.Env, kube kubernetes.Interface, agentBin string, nPods int) (string, error) {
	dir, err := os.MkdirTemp("", "bench-gateway-agent-")
	if err != nil {
		return "", err
	}
	go func() { <-ctx.Done(); time.Sleep(time.Second); _ = os.RemoveAll(dir) }()
	for i := range nPods {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-pod-%03d", i), Namespace: "default"},
			Spec: corev1.PodSpec{NodeName: agentNode, Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}}}
		if _, err := kube.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return "", err
		}
	}

	// The gateway's identity toward the agent: infera-gateway's rules.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infera-system"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := env.Kubectl(ctx, "apply", "-f", filepath.Join(env.Root, "config", "rbac", "gateway", "role.yaml")); err != nil {
		return "", err
	}
	if _, err := kube.CoreV1().ServiceAccounts("infera-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "infera-gateway"}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-gateway"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "infera-gateway"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "infera-gateway", Namespace: "infera-system"}},
	}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tr, err := kube.CoreV1().ServiceAccounts("infera-system").CreateToken(ctx, "infera-gateway", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	tokenFile := filepath.Join(dir, "gateway-token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		return "", err
	}
	certs, err := testcerts.Write(dir, agentServerName)
	if err != nil {
		return "", err
	}
	grpcPort, err := freePort()
	if err != nil {
		return "", err
	}
	httpPort, err := freePort()
	if err != nil {
		return "", err
	}
	for _, d := range []string{"cgroup", "state", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	agentCfg := filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(agentCfg, fmt.Appendf(nil, `api_version = "config.infera.io/v1alpha1"
kind = "AgentConfiguration"
backend = "observe-only"
state_dir = %q

[cgroup]
root = %q

[scx]
config_path = %q

[server]
address = "127.0.0.1:%d"
grpc_socket = %q
grpc_address = "127.0.0.1:%d"
grpc_tls_cert_file = %q
grpc_tls_key_file = %q

[observation]
enabled = false
`, filepath.Join(dir, "state"), filepath.Join(dir, "cgroup"), filepath.Join(dir, "run", "layered.json"),
		httpPort, filepath.Join(dir, "agent.sock"), grpcPort, certs.Cert, certs.Key), 0o644); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, agentBin, "--kubeconfig", env.Kubeconfig, "--config", agentCfg)
	cmd.Env = append(os.Environ(), "NODE_NAME="+agentNode)
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return "", err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { _ = cmd.Wait(); _ = logf.Close() }()

	gwCfg := filepath.Join(dir, "gateway.yaml")
	return gwCfg, os.WriteFile(gwCfg, fmt.Appendf(nil, `apiVersion: config.infera.io/v1alpha1
kind: GatewayConfiguration
agents:
  discovery: NodeAddress
  port: %d
  caFile: %s
  serverName: %s
  tokenFile: %s
`, grpcPort, certs.CA, agentServerName, tokenFile), 0o644)
}
