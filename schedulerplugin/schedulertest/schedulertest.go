// Package schedulertest runs a real kube-scheduler in-process, built exactly
// as cmd/infera-scheduler builds it (app.Setup with the InferaDensity plugin
// in the out-of-tree registry) from a KubeSchedulerConfiguration file. It
// exists for the integration tests and the placement benchmark, which may
// not import k8s.io/kubernetes themselves; nothing in the product imports it.
//
// kube-scheduler registers process-wide state (configz, metrics), so run
// one scheduler at a time in a process; Run undoes the configz registration
// when it returns, so the next one can start.
package schedulertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"sigs.k8s.io/yaml"

	"github.com/infera-io/temper/schedulerplugin"
)

// Run starts the scheduler described by configFile and blocks until ctx is
// done. Logs go to the logger in ctx (klog.NewContext), which the plugin
// also uses. The secure port is off; leader election follows the file.
func Run(ctx context.Context, configFile string) error {
	if err := schedulerplugin.RegisterArgs(); err != nil {
		return err
	}
	opts := options.NewOptions()
	opts.ConfigFile = configFile
	opts.SecureServing.BindPort = 0
	// opts.InformerName stays nil: informer names are process-wide and
	// may be registered once, and a test process may run the scheduler
	// more than once.
	cc, sched, err := app.Setup(ctx, opts, app.WithPlugin(schedulerplugin.Name, schedulerplugin.New))
	if err != nil {
		return fmt.Errorf("failed to set up the scheduler from %s: %w", configFile, err)
	}
	// app.Run registers the configuration with configz and refuses to run
	// if it is registered already.
	defer configz.Delete("componentconfig")
	if err := app.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
		return fmt.Errorf("scheduler stopped: %w", err)
	}
	return nil
}

// Start runs the scheduler in the background. The returned stop cancels it
// and waits for it to return, reporting any error it failed with.
func Start(ctx context.Context, configFile string) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, configFile) }()
	return func() error {
		cancel()
		return <-done
	}
}

// ConfigOverrides are what WriteConfig changes in a configuration file.
type ConfigOverrides struct {
	// Kubeconfig is the path of the kubeconfig the scheduler connects with.
	Kubeconfig string
	// QPS and Burst, when not zero, replace the client's rate limits
	// (kube-scheduler defaults to 50 and 100, which would make a benchmark
	// measure the rate limiter instead of the scheduler).
	QPS   float32
	Burst int32
}

// WriteConfig copies the KubeSchedulerConfiguration at src into dir with
// the overrides applied and leader election off, and returns the new
// file's path. Tests and the benchmark use it to run a checked-in
// configuration against their own API server; the profiles stay as they are.
func WriteConfig(src, dir string, o ConfigOverrides) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", fmt.Errorf("failed to read scheduler configuration: %w", err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return "", fmt.Errorf("failed to parse scheduler configuration %s: %w", src, err)
	}
	if cfg == nil {
		return "", errors.New("scheduler configuration " + src + " is empty")
	}
	conn, _ := cfg["clientConnection"].(map[string]any)
	if conn == nil {
		conn = map[string]any{}
	}
	conn["kubeconfig"] = o.Kubeconfig
	if o.QPS != 0 {
		conn["qps"] = o.QPS
	}
	if o.Burst != 0 {
		conn["burst"] = o.Burst
	}
	cfg["clientConnection"] = conn
	cfg["leaderElection"] = map[string]any{"leaderElect": false}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("failed to render scheduler configuration: %w", err)
	}
	path := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return "", fmt.Errorf("failed to write scheduler configuration: %w", err)
	}
	return path, nil
}
