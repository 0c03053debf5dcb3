// Command infera-scheduler is kube-scheduler v1.37 with the InferaDensity
// plugin registered (schedulerplugin). It takes kube-scheduler's flags and
// configuration file unchanged; a profile enables the plugin by name. See
// config/scheduler for sample configurations and docs/scheduler.md.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/infera-io/temper/schedulerplugin"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(schedulerplugin.Name, schedulerplugin.New))
	os.Exit(cli.Run(cmd))
}
