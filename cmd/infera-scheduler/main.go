// Command infera-scheduler is kube-scheduler v1.37 with the InferaDensity
// plugin registered (schedulerplugin). It takes kube-scheduler's flags and
// configuration file unchanged; a profile enables the plugin by name. See
// config/scheduler for sample configurations and docs/scheduler.md.
package main

import (
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
	cmd := app.NewSchedulerCommand(app.WithPlugin(schedulerplugin.Name, schedulerplugin.New))
	os.Exit(cli.Run(exitCleanlyOnStop(cmd, stop)))
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
