// Command infera-agent is Temper's node agent (L0): it tiers the pods of its
// node and makes the kernel enforce the tiers. It runs as a privileged
// DaemonSet pod with the host's /sys; NODE_NAME comes from the downward API.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent"
)

func main() {
	ro := nodeagent.RunOptions{NodeName: os.Getenv("NODE_NAME")}
	flag.StringVar(&ro.ConfigPath, "config", "", "agent config file (TOML); empty means the defaults")
	flag.StringVar(&ro.Kubeconfig, "kubeconfig", "", "kubeconfig; empty means in-cluster")
	probe := flag.Bool("probe", false, "print which enforcement backend the agent would select on this node, and why, then exit; starts and changes nothing")
	restore := flag.Bool("restore", false, "undo everything an agent did on this node (stop its scx_layered, write every recorded cgroup original back) and exit; for uninstall")
	logCfg := textlogger.NewConfig()
	logCfg.AddFlags(flag.CommandLine)
	flag.Parse()
	ro.Log = textlogger.NewLogger(logCfg)
	klog.SetLogger(ro.Log)

	if *probe {
		os.Exit(runProbe(ro))
	}
	if *restore {
		if err := nodeagent.Restore(nodeagent.RestoreOptions{ConfigPath: ro.ConfigPath, Out: os.Stdout, Log: ro.Log,
			NodeName: ro.NodeName, Kubeconfig: ro.Kubeconfig}); err != nil {
			fmt.Fprintln(os.Stderr, "infera-agent --restore:", err)
			os.Exit(1)
		}
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := nodeagent.Run(ctx, ro)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "infera-agent:", err)
		os.Exit(1)
	}
}

func runProbe(ro nodeagent.RunOptions) int {
	cfg := configv1alpha1.DefaultAgentConfiguration()
	if ro.ConfigPath != "" {
		var err error
		if cfg, err = configv1alpha1.LoadAgentConfiguration(ro.ConfigPath); err != nil {
			fmt.Fprintln(os.Stderr, "infera-agent --probe:", err)
			return 1
		}
	}
	backend, status, why := nodeagent.Probe(cfg, ro.Log)
	fmt.Printf("backend: %s\nagent-status: %s\nwhy: %s\n", backend, status, why)
	return 0
}
