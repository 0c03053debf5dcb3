package gateway

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

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent"
	"github.com/infera-io/temper/test/liveagent"
	"github.com/infera-io/temper/test/testcerts"
)

// The suite's agents, found by their Nodes' InternalIP (NodeAddress
// discovery; EndpointSlices may not hold loopback addresses) on agentPort:
//
//	gw-a1  127.0.0.1  a real infera-agent (nodeagent.Agent, observe-only) with
//	                  its gRPC API on TLS, checking the gateway's token
//	gw-n2  127.0.0.2  nothing listens: connection refused (an agent down)
//	gw-n3  127.0.0.3  accepts and never answers (a hung agent: timeout)
//	gw-n1  10.0.0.1   nothing answers
//	gw-n4             no InternalIP at all
const (
	agentNode       = "gw-a1"
	agentNS         = "gw-agents"
	agentService    = "infera-agent-grpc"
	agentServerName = "infera-agent.infera-system.svc"
	agentTimeout    = 2 * time.Second
)

var (
	agentPort int
	agent     *nodeagent.Agent
	tree      *liveagent.Tree
	tmpDir    string
)

// freePort returns a TCP port free on 127.0.0.1.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startAgents starts the real agent of gw-a1 and the hung listener of gw-n3,
// publishes the EndpointSlice, and returns the gateway's agents
// configuration (the gateway presents gwToken).
func startAgents(ctx context.Context, gwToken string) (*configv1alpha1.GatewayAgents, error) {
	var err error
	if tmpDir, err = os.MkdirTemp("", "gateway-agents-"); err != nil {
		return nil, err
	}
	certs, err := testcerts.Write(tmpDir, agentServerName)
	if err != nil {
		return nil, err
	}
	tokenFile := filepath.Join(tmpDir, "gateway-token")
	if err := os.WriteFile(tokenFile, []byte(gwToken), 0o600); err != nil {
		return nil, err
	}
	if agentPort, err = freePort(); err != nil {
		return nil, err
	}
	port := strconv.Itoa(agentPort)

	// The node and its pods.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	node, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: agentNode, Labels: map[string]string{"pool": "agents"}}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	node.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
	}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return nil, err
	}
	// The pods' cgroups hold real processes (a light load in a-crit, a
	// sleeper in a-norm), so the agent's usage samples are real.
	if tree, err = liveagent.NewTree(filepath.Join(tmpDir, "cgroup")); err != nil {
		return nil, err
	}
	for _, p := range []*corev1.Pod{pod("a-crit", "infera-critical", nil, "1"), pod("a-norm", "", nil, "500m")} {
		p.Namespace, p.Spec.NodeName = agentNS, agentNode
		created, err := kube.CoreV1().Pods(agentNS).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		load := liveagent.Idle
		if p.Name == "a-crit" {
			load = liveagent.Light
		}
		if _, err := tree.AddPod(created, load); err != nil {
			return nil, err
		}
	}

	// The agent: observe-only (this machine's kernel is not the node's),
	// with its gRPC API on TLS. Its own client is the admin's; callers are
	// checked against the gateway's token and RBAC.
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.Backend = configv1alpha1.AgentBackendObserveOnly
	cfg.Cgroup.Root = filepath.Join(tmpDir, "cgroup")
	// Observation on, for trace capture (eBPF; root and BTF on this host)
	// and usage, sampled every second so the tests see samples soon.
	cfg.Observation.SampleInterval.Duration = time.Second
	cfg.Observation.TraceDir = filepath.Join(tmpDir, "traces")
	cfg.StateDir = filepath.Join(tmpDir, "state")
	cfg.SCX.ConfigPath = filepath.Join(tmpDir, "run", "layered.json")
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg.Server.Address = "127.0.0.1:" + strconv.Itoa(httpPort)
	cfg.Server.GRPCSocket = filepath.Join(tmpDir, "agent.sock")
	cfg.Server.GRPCAddress = "127.0.0.1:" + port
	cfg.Server.GRPCTLSCertFile, cfg.Server.GRPCTLSKeyFile = certs.Cert, certs.Key
	for _, d := range []string{filepath.Join(tmpDir, "cpu")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(tmpDir, "cpu", "online"), []byte("0-3\n"), 0o644); err != nil {
		return nil, err
	}
	agent, err = nodeagent.New(nodeagent.Options{Config: cfg, NodeName: agentNode, Client: kube, Log: logr.Discard(),
		SchedExtRoot: filepath.Join(tmpDir, "no-sched-ext"), SysCPURoot: filepath.Join(tmpDir, "cpu")})
	if err != nil {
		return nil, err
	}
	go func() { _ = agent.Run(ctx) }()

	// gw-n3's hung agent.
	hung, err := net.Listen("tcp", "127.0.0.3:"+port)
	if err != nil {
		return nil, fmt.Errorf("hung agent: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = hung.Close()
	}()
	go func() {
		var held []net.Conn
		for {
			c, err := hung.Accept()
			if err != nil {
				for _, c := range held {
					_ = c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()

	// Wait for the agent's first report so the fleet views are stable.
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := kube.CoreV1().Nodes().Get(ctx, agentNode, metav1.GetOptions{})
		if err == nil && n.Annotations[wellknown.TierLoadAnnotation] != "" && agent.GRPCAddress() != "" {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the agent of %s did not report within 60s (annotations %v)", agentNode, n.GetAnnotations())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &configv1alpha1.GatewayAgents{
		Discovery: configv1alpha1.AgentDiscoveryNodeAddress,
		Port:      int32(agentPort), CAFile: certs.CA, ServerName: agentServerName, TokenFile: tokenFile,
		Timeout: &metav1.Duration{Duration: agentTimeout}, MaxConcurrent: 2,
	}, nil
}
