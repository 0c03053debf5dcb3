package liveagent

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent"
	"github.com/infera-io/temper/test/testcerts"
)

// ServerName is the name the agent's serving certificate is for.
const ServerName = "infera-agent.infera-system.svc"

// Pod is a pod to run on the node with its load.
type Pod struct {
	Pod  *corev1.Pod
	Load Load
}

// Options describe the node and its agent.
type Options struct {
	// Kube is the admin's client: it creates the Node and the Pods, and is
	// the agent's own client.
	Kube kubernetes.Interface
	// Node is the Node to create, with Labels and 4 CPUs; its InternalIP
	// is Address (default 127.0.0.1), where the gateway finds the agent.
	Node    string
	Labels  map[string]string
	Address string
	// Pods are created bound to the Node (their namespaces must exist).
	Pods []Pod
	// GatewayToken is the token the gateway presents to the agent.
	GatewayToken string
	// Dir holds the cgroup tree, certificates, state and sockets.
	Dir string
}

// Agent is a running agent.
type Agent struct {
	Agent *nodeagent.Agent
	Tree  *Tree
	// Pods are the created pods, in Options.Pods order.
	Pods []*corev1.Pod
	// Gateway is the gateway's agents configuration that reaches it.
	Gateway *configv1alpha1.GatewayAgents
}

// FreePort returns a TCP port free on 127.0.0.1.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start creates the Node and its Pods, writes their cgroups with real
// processes, and runs a real agent (observe-only, sampling every second,
// its gRPC API on TLS checking the gateway's token) until ctx ends; it
// returns once the agent has reported to the Node. Call Tree.Stop when
// done.
func Start(ctx context.Context, o Options) (*Agent, error) {
	if o.Address == "" {
		o.Address = "127.0.0.1"
	}
	certs, err := testcerts.Write(o.Dir, ServerName)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(o.Dir, "gateway-token")
	if err := os.WriteFile(tokenFile, []byte(o.GatewayToken), 0o600); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	node, err := o.Kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: o.Node, Labels: o.Labels}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	node.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: o.Address}},
	}
	if _, err := o.Kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	a := &Agent{}
	if a.Tree, err = NewTree(filepath.Join(o.Dir, "cgroup")); err != nil {
		return nil, err
	}
	for _, p := range o.Pods {
		p.Pod.Spec.NodeName = o.Node
		created, err := o.Kube.CoreV1().Pods(p.Pod.Namespace).Create(ctx, p.Pod, metav1.CreateOptions{})
		if err != nil {
			a.Tree.Stop()
			return nil, err
		}
		a.Pods = append(a.Pods, created)
		if _, err := a.Tree.AddPod(created, p.Load); err != nil {
			a.Tree.Stop()
			return nil, err
		}
	}

	// Observe-only: this machine's kernel is not the node's.
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.Backend = configv1alpha1.AgentBackendObserveOnly
	cfg.Cgroup.Root = a.Tree.Root
	cfg.Observation.SampleInterval.Duration = time.Second
	cfg.Observation.TraceDir = filepath.Join(o.Dir, "traces")
	cfg.StateDir = filepath.Join(o.Dir, "state")
	cfg.SCX.ConfigPath = filepath.Join(o.Dir, "run", "layered.json")
	httpPort, err := FreePort()
	if err != nil {
		a.Tree.Stop()
		return nil, err
	}
	cfg.Server.Address = "127.0.0.1:" + strconv.Itoa(httpPort)
	cfg.Server.GRPCSocket = filepath.Join(o.Dir, "agent.sock")
	cfg.Server.GRPCAddress = net.JoinHostPort(o.Address, strconv.Itoa(port))
	cfg.Server.GRPCTLSCertFile, cfg.Server.GRPCTLSKeyFile = certs.Cert, certs.Key
	cpuDir := filepath.Join(o.Dir, "cpu")
	if err := os.MkdirAll(cpuDir, 0o755); err != nil {
		a.Tree.Stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cpuDir, "online"), []byte("0-3\n"), 0o644); err != nil {
		a.Tree.Stop()
		return nil, err
	}
	a.Agent, err = nodeagent.New(nodeagent.Options{Config: cfg, NodeName: o.Node, Client: o.Kube, Log: logr.Discard(),
		SchedExtRoot: filepath.Join(o.Dir, "no-sched-ext"), SysCPURoot: cpuDir})
	if err != nil {
		a.Tree.Stop()
		return nil, err
	}
	go func() { _ = a.Agent.Run(ctx) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := o.Kube.CoreV1().Nodes().Get(ctx, o.Node, metav1.GetOptions{})
		if err == nil && n.Annotations[wellknown.TierLoadAnnotation] != "" && a.Agent.GRPCAddress() != "" {
			break
		}
		if time.Now().After(deadline) {
			a.Tree.Stop()
			return nil, fmt.Errorf("the agent of %s did not report within 60s (annotations %v)", o.Node, n.GetAnnotations())
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.Gateway = &configv1alpha1.GatewayAgents{
		Discovery: configv1alpha1.AgentDiscoveryNodeAddress,
		Port:      int32(port), CAFile: certs.CA, ServerName: ServerName, TokenFile: tokenFile,
		Timeout: &metav1.Duration{Duration: 2 * time.Second}, MaxConcurrent: 4,
	}
	return a, nil
}
