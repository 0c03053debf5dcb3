// Command infera-gateway serves Temper's cluster API: REST /api/v1
// generated from apis/proto/infera/v1/cluster.proto by grpc-gateway, its
// OpenAPI document, /healthz, /readyz and /metrics, on :8090 by default.
// Callers authenticate with Kubernetes bearer tokens; docs/gateway.md
// describes the API, the auth model and the audit log.
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

	"github.com/infera-io/temper/gateway"
)

func main() {
	fs := flag.NewFlagSet("infera-gateway", flag.ExitOnError)
	configPath := fs.String("config", "", "path of a GatewayConfiguration file (config.infera.io/v1alpha1); empty means all defaults")
	bind := fs.String("bind-address", "", "overrides the configuration's bindAddress (default :8090)")
	auditLog := fs.String("audit-log", "", `overrides the configuration's auditLogPath ("-" is stdout)`)
	ctrlconfig.RegisterFlags(fs)
	logCfg := textlogger.NewConfig()
	logCfg.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	log := textlogger.NewLogger(logCfg)
	klog.SetLogger(log)

	cfg, err := gateway.LoadConfig(*configPath)
	if err == nil {
		if *bind != "" {
			cfg.BindAddress = *bind
		}
		if *auditLog != "" {
			cfg.AuditLogPath = auditLog
		}
		restCfg, rerr := ctrlconfig.GetConfig()
		if rerr != nil {
			err = fmt.Errorf("failed to load the kubeconfig: %w", rerr)
		} else {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			err = gateway.Run(ctx, gateway.Options{Config: cfg, RestConfig: restCfg, Log: log})
			stop()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "infera-gateway:", err)
		os.Exit(1)
	}
}
