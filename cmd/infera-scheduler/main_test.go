package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/validation"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/schedulerplugin"
)

// runMainEnv makes the test binary run main() instead of the tests, so the
// start-up tests run the real command, flags and all, in a child process:
// kube-scheduler's command installs a process-wide signal handler and may
// run only once per process.
const runMainEnv = "INFERA_SCHEDULER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		return
	}
	// As main does, before any configuration is loaded.
	if err := schedulerplugin.RegisterArgs(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// inferaProfile is what the checked-in configurations must agree on.
type inferaProfile struct {
	MultiPoint []schedconfig.Plugin
	Args       *configv1alpha1.InferaDensityArgs
}

// TestSampleConfigurations loads every checked-in scheduler configuration
// with kube-scheduler's own loader and validation, as the binary does, and
// checks that each has the infera-scheduler profile with the plugin's args
// decoding cleanly, that the profile is the same in all of them, and which
// files also carry the stock profile.
func TestSampleConfigurations(t *testing.T) {
	root := filepath.Join("..", "..", "config", "scheduler")
	files := map[string]bool{ // file → has the default-scheduler profile
		"scheduler-config.yaml":        true,
		"local/scheduler-config.yaml":  true,
		"deploy/scheduler-config.yaml": false,
	}
	var want *inferaProfile
	for file, wantDefault := range files {
		t.Run(file, func(t *testing.T) {
			cfg, err := options.LoadConfigFromFile(logr.Discard(), filepath.Join(root, file))
			if err != nil {
				t.Fatalf("kube-scheduler cannot load %s: %v", file, err)
			}
			if err := validation.ValidateKubeSchedulerConfiguration(cfg); err != nil {
				t.Fatalf("kube-scheduler rejects %s: %v", file, err)
			}
			var got *inferaProfile
			hasDefault := false
			for _, p := range cfg.Profiles {
				switch p.SchedulerName {
				case "default-scheduler":
					hasDefault = true
					for _, pl := range p.Plugins.MultiPoint.Enabled {
						if pl.Name == schedulerplugin.Name {
							t.Errorf("the stock profile enables %s", schedulerplugin.Name)
						}
					}
				case "infera-scheduler":
					got = &inferaProfile{MultiPoint: p.Plugins.MultiPoint.Enabled}
					for _, pc := range p.PluginConfig {
						if pc.Name != schedulerplugin.Name {
							continue
						}
						if got.Args, err = schedulerplugin.DecodeArgs(pc.Args); err != nil {
							t.Fatalf("%s args in %s: %v", schedulerplugin.Name, file, err)
						}
					}
				}
			}
			if hasDefault != wantDefault {
				t.Errorf("has the default-scheduler profile = %v, want %v", hasDefault, wantDefault)
			}
			if got == nil || got.Args == nil {
				t.Fatalf("no infera-scheduler profile with %s args in %s", schedulerplugin.Name, file)
			}
			found := false
			for _, pl := range got.MultiPoint {
				found = found || (pl.Name == schedulerplugin.Name && pl.Weight > 0)
			}
			if !found {
				t.Errorf("infera-scheduler profile does not enable %s with a weight: %+v", schedulerplugin.Name, got.MultiPoint)
			}
			if want == nil {
				want = got
			} else if d := cmp.Diff(want, got); d != "" {
				t.Errorf("infera-scheduler profile differs between the configurations (-first +%s):\n%s", file, d)
			}
		})
	}
}

func TestExitCleanlyOnStop(t *testing.T) {
	finished := errors.New("finished without leader elect")
	run := func(stopRequested bool) error {
		cmd := &cobra.Command{RunE: func(*cobra.Command, []string) error { return finished }, SilenceErrors: true, SilenceUsage: true}
		cmd.SetArgs([]string{})
		stop := make(chan os.Signal, 1)
		if stopRequested {
			stop <- syscall.SIGTERM
		}
		return exitCleanlyOnStop(cmd, stop).Execute()
	}
	if err := run(true); err != nil {
		t.Errorf("after SIGTERM: %v, want a clean exit", err)
	}
	if err := run(false); !errors.Is(err, finished) {
		t.Errorf("without a stop request: %v, want the scheduler's error", err)
	}
}
