// Command infera-scheduler is kube-scheduler v1.37 with the InferaDensity
// plugin registered (schedulerplugin). It takes kube-scheduler's flags and
// configuration file unchanged; a profile enables the plugin by name. See
// config/scheduler for sample configurations and docs/scheduler.md.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/infera-io/temper/schedulerplugin"
)

func main() {
	// kube-scheduler handles SIGINT and SIGTERM itself; this channel only
	// records that a stop was requested.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	cmd, err := newCommand(stop)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(cli.Run(cmd))
}

// newCommand is kube-scheduler's command with the plugin in its registry
// and the plugin's args in its configuration scheme, so the configuration
// file's args are decoded strictly, defaulted and validated at start.
func newCommand(stop <-chan os.Signal) (*cobra.Command, error) {
	if err := schedulerplugin.RegisterArgs(); err != nil {
		return nil, err
	}
	cmd := app.NewSchedulerCommand(app.WithPlugin(schedulerplugin.Name, schedulerplugin.New))
	return exitCleanlyOnStop(cmd, stop), nil
}

// exitCleanlyOnStop makes a requested stop a success. Without leader
// election, kube-scheduler returns "finished without leader elect" when its
// context ends, so every Ctrl-C of `make run` and every SIGTERM from a
// supervisor would look like a crash (exit 1). Failures without a stop
// request still fail.
func exitCleanlyOnStop(cmd *cobra.Command, stop <-chan os.Signal) *cobra.Command {
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		err := run(c, args)
		if err != nil && len(stop) > 0 {
			return nil
		}
		return err
	}
	return cmd
}
