package inferactl

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

func newCompletionCommand(o *options, root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: `Print a completion script for bash, zsh or fish.

  source <(inferactl completion bash)

As a kubectl plugin, kubectl (1.26 and later) completes "kubectl infera ..."
through an executable named kubectl_complete-infera on PATH; docs/cli.md has
the two-line script.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish"},
		RunE: func(_ *cobra.Command, args []string) error {
			// The script is for the executable's own name; the kubectl
			// plugin gets kubectl_complete-infera instead.
			use := root.Use
			if o.cmdName != "inferactl" {
				root.Use = PluginName
			}
			defer func() { root.Use = use }()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(o.streams.Out, true)
			case "zsh":
				return root.GenZshCompletion(o.streams.Out)
			case "fish":
				return root.GenFishCompletion(o.streams.Out, true)
			}
			return errf(ExitUsage, "", "completion: %q is not bash, zsh or fish", args[0])
		},
	}
}

func newVersionCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print inferactl's version and, when reachable, the Kubernetes API server's",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(o.streams.Out, "inferactl: %s (%s, %s/%s)\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			kube, _, err := o.kubeClient()
			if err != nil {
				fmt.Fprintf(o.streams.Out, "Kubernetes: unknown (%v)\n", firstLine(err))
				return nil
			}
			v, err := kube.Discovery().ServerVersion()
			if err != nil {
				fmt.Fprintf(o.streams.Out, "Kubernetes: unknown (%v)\n", firstLine(err))
				return nil
			}
			fmt.Fprintf(o.streams.Out, "Kubernetes: %s\n", v.GitVersion)
			if o.gatewayConfigured() {
				fmt.Fprintf(o.streams.Out, "Gateway: %s\n", o.gateway.URL)
			}
			return nil
		},
	}
}

func firstLine(err error) string {
	s := err.Error()
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}
