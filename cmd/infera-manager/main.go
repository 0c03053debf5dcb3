// Command infera-manager runs Temper's controllers (InferaPolicy,
// NodeQoSReport with the silent-agent backstop, OvercommitProfile) and the
// overcommit admission webhook in one leader-elected controller-runtime
// manager. Everything is configured by a ManagerConfiguration file
// (apis/config/v1alpha1); docs/manager.md describes it.
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
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/client/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	managerapp "github.com/infera-io/temper/cmd/infera-manager/app"
)

func main() {
	fs := flag.NewFlagSet("infera-manager", flag.ExitOnError)
	configPath := fs.String("config", "", "path of a ManagerConfiguration file (config.infera.io/v1alpha1); empty means all defaults")
	ctrlconfig.RegisterFlags(fs)
	logCfg := textlogger.NewConfig()
	logCfg.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])

	log := textlogger.NewLogger(logCfg)
	klog.SetLogger(log)
	ctrllog.SetLogger(log)

	if err := run(*configPath); err != nil {
		fmt.Fprintln(os.Stderr, "infera-manager:", err)
		os.Exit(1)
	}
}

func run(configPath string) error {
	cfg, err := managerapp.LoadConfig(configPath)
	if err != nil {
		return err
	}
	rc, err := ctrlconfig.GetConfig()
	if err != nil {
		return fmt.Errorf("failed to load the kubeconfig: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return managerapp.Run(ctx, managerapp.Options{RestConfig: rc, Config: cfg, Log: ctrllog.Log})
}
