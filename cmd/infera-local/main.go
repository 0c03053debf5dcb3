// Command infera-local runs the Temper platform on an embedded local control
// plane (etcd and kube-apiserver built from source): the main job of
// `make run`. It stops, with every process it started, on SIGINT or SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/infera-io/temper/internal/localcluster"
)

func main() {
	host, _ := os.Hostname()
	o := localcluster.Options{Out: os.Stdout}
	flag.StringVar(&o.BinDir, "bin-dir", "bin", "directory with kube-apiserver, etcd, kube-controller-manager and kubectl (make controlplane)")
	flag.StringVar(&o.CRDDir, "crd-dir", "config/crd/bases", "directory with the CRD manifests")
	flag.StringVar(&o.StateDir, "state-dir", ".run", "directory for the kubeconfig")
	flag.StringVar(&o.NodeName, "node-name", host, "name of the Node this machine registers as")
	flag.StringVar(&o.GatewayRBACDir, "gateway-rbac-dir", "config/rbac/gateway", "directory with infera-gateway's user_roles.yaml (\"\" skips the gateway's caller token)")
	flag.StringVar(&o.AgentBaseConfig, "agent-config", "config/agent/local.toml", "the agent's config; infera-local adds its gRPC TLS listener for the gateway (\"\" with --gateway-rbac-dir=\"\" leaves the gateway without agents)")
	flag.Parse()
	o.Components = func(kubeconfig string, w localcluster.Wiring) []localcluster.Component {
		agentConfig, gatewayArgs := o.AgentBaseConfig, []string{}
		if w.AgentConfig != "" {
			agentConfig, gatewayArgs = w.AgentConfig, []string{"--config", w.GatewayConfig}
		}
		return []localcluster.Component{
			// The stock controllers a user expects of a cluster: namespaces
			// are finalized, owners collect their dependents, workloads
			// create pods. Not the node lifecycle controller: no kubelet
			// renews this Node's lease, and it would taint the node.
			{Name: "kube-controller-manager", Args: localcluster.ControllerManagerArgs(kubeconfig)},
			// The node agent for this machine, on its default config:
			// scx_layered where the kernel has sched_ext, otherwise it
			// reports why it only observes.
			// :9100 on loopback (config/agent/local.toml), so curl needs no
			// token; gRPC over TLS on 127.0.0.1:9101 for the gateway
			// (localcluster.WireAgent).
			{Name: "infera-agent", Args: []string{"--kubeconfig", kubeconfig, "--config", agentConfig}, Env: []string{"NODE_NAME=" + o.NodeName}},
			// Controllers and the overcommit webhook; in this local mode the
			// manager registers its webhook by URL with the API server.
			{Name: "infera-manager", Args: []string{"--kubeconfig", kubeconfig, "--config", "config/manager/local.yaml"}},
			// A real kube-scheduler with the InferaDensity plugin: the stock
			// profile and the infera-scheduler profile.
			{Name: "infera-scheduler", Args: []string{"--config=config/scheduler/local/scheduler-config.yaml", "--secure-port=0"}},
			// The cluster API on 127.0.0.1:8090 (/api/v1, OpenAPI, probes,
			// metrics); callers authenticate with Kubernetes tokens. It
			// reaches the agent as infera-local-gateway (WireAgent).
			{Name: "infera-gateway", Args: append([]string{"--kubeconfig", kubeconfig, "--bind-address", "127.0.0.1:8090",
				"--audit-log", filepath.Join(o.StateDir, "gateway-audit.log")}, gatewayArgs...)},
		}
	}
	o.Log = textlogger.NewLogger(textlogger.NewConfig())
	klog.SetLogger(o.Log)
	ctrllog.SetLogger(o.Log)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := localcluster.Run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "infera-local:", err)
		os.Exit(1)
	}
}
