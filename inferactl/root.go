package inferactl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// PluginName is the executable name that makes kubectl run inferactl as
// `kubectl infera`.
const PluginName = "kubectl-infera"

// Version is the inferactl version; the build sets it with
// -ldflags "-X github.com/infera-io/temper/inferactl.Version=...".
var Version = ""

// options is what every command shares: the kubeconfig flags, the gateway
// flags and the streams.
type options struct {
	streams genericiooptions.IOStreams
	config  *genericclioptions.ConfigFlags
	gateway gatewayOptions
	// cmdName is how the user calls us: "inferactl" or "kubectl infera".
	cmdName string

	restConfig *rest.Config
	kube       kubernetes.Interface
}

// CommandName returns how the user calls the binary named argv0: "kubectl
// infera" for the plugin executable, else "inferactl".
func CommandName(argv0 string) string {
	if strings.TrimSuffix(filepath.Base(argv0), ".exe") == PluginName {
		return "kubectl infera"
	}
	return "inferactl"
}

// NewCommand returns the root command; argv0 picks the help text.
func NewCommand(argv0 string, streams genericiooptions.IOStreams) *cobra.Command {
	o := &options{streams: streams, config: genericclioptions.NewConfigFlags(true), cmdName: CommandName(argv0)}
	name := o.cmdName
	root := &cobra.Command{
		// cobra names a command by the first word of Use; the plugin's
		// display name is "kubectl infera" (kubectl's plugin convention).
		Use:         strings.TrimPrefix(name, "kubectl "),
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: name},
		Short:       "See and steer Temper's CPU tiers from the terminal",
		Long: strings.ReplaceAll(`NAME shows the fleet, the nodes and the pods with their CPU tiers, explains
why a pod has its tier and switches safe mode, through infera-gateway's
/api/v1 or, without a gateway, computed from the API server's objects.

The gateway is found from --gateway or $INFERA_GATEWAY. It authenticates you
by the bearer token of your kubeconfig (or --gateway-token-file).

Exit codes (docs/cli.md): 0 ok, 1 other error, 2 usage, 3 no kubeconfig or
API server unreachable, 4 no gateway, 5 not authenticated or not permitted,
6 unknown pod or node, 7 CRDs not installed, 8 refused (policy-owned safe
mode without --force), 9 --wait timed out, 10 not served yet, 11 an action
failed on some nodes.`, "NAME", name),
		SilenceUsage:  true,
		SilenceErrors: true,
		// Unknown subcommands are a usage error.
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &Error{Code: ExitUsage, Msg: err.Error(), Hint: "See '" + c.CommandPath() + " --help'.", Err: err}
	})
	fs := root.PersistentFlags()
	o.config.AddFlags(fs)
	fs.StringVar(&o.gateway.URL, "gateway", "", "infera-gateway's base URL, e.g. http://127.0.0.1:8090 (default $"+EnvGateway+")")
	fs.StringVar(&o.gateway.TokenFile, "gateway-token-file", "", "file with the bearer token for the gateway (default $"+EnvGatewayTokenFile+", else the kubeconfig's token)")
	fs.StringVar(&o.gateway.CAFile, "gateway-certificate-authority", "", "CA bundle of an https gateway (default $"+EnvGatewayCAFile+", else the system roots)")

	root.AddCommand(
		newStatusCommand(o), newNodesCommand(o), newPodsCommand(o), newExplainCommand(o),
		newSafeModeCommand(o), newTopCommand(o), newTraceCommand(o), newEventsCommand(o),
		newCRDCommand(o, "reports", "NodeQoSReports (one per node, written by infera-manager)", "nodeqosreports"),
		newCRDCommand(o, "policies", "InferaPolicies (safe mode and priority mapping by node selector)", "inferapolicies"),
		newCRDCommand(o, "profiles", "OvercommitProfiles (CPU request ratios by namespace)", "overcommitprofiles"),
		newCompletionCommand(o, root), newVersionCommand(o),
	)
	for _, c := range root.Commands() {
		c.Example = strings.ReplaceAll(c.Example, "NAME", name)
	}
	return root
}

// Run runs the command line and returns the exit code; the error goes to
// stderr.
func Run(ctx context.Context, argv0 string, args []string, streams genericiooptions.IOStreams) int {
	cmd := NewCommand(argv0, streams)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		// cobra's own argument errors are usage errors.
		var e *Error
		if !errors.As(err, &e) && isCobraUsage(err) {
			err = &Error{Code: ExitUsage, Msg: err.Error(), Hint: "See '" + CommandName(argv0) + " --help'.", Err: err}
		}
		fmt.Fprintln(streams.ErrOut, "error: "+err.Error())
	}
	return ExitCode(err)
}

func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "accepts ", "requires at least", "requires exactly", "invalid argument", "unknown flag", "unknown shorthand"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// kubeClient loads the kubeconfig once.
func (o *options) kubeClient() (kubernetes.Interface, *rest.Config, error) {
	if o.kube != nil {
		return o.kube, o.restConfig, nil
	}
	if err := o.checkKubeconfig(); err != nil {
		return nil, nil, err
	}
	cfg, err := o.config.ToRESTConfig()
	if err != nil {
		return nil, nil, kubeError(err, "the kubeconfig")
	}
	cfg.UserAgent = "inferactl/" + version()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to create the Kubernetes client: %w", err)
	}
	o.kube, o.restConfig = cs, cfg
	return cs, cfg, nil
}

// checkKubeconfig fails when there is no cluster to talk to: no kubeconfig
// with a cluster, no --server and not in a pod. (client-go would otherwise
// try http://localhost:8080, as kubectl does.)
func (o *options) checkKubeconfig() error {
	if o.config.APIServer != nil && *o.config.APIServer != "" {
		return nil
	}
	if _, err := rest.InClusterConfig(); err == nil {
		return nil
	}
	raw, err := o.config.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return kubeError(err, "the kubeconfig")
	}
	if len(raw.Clusters) == 0 {
		where := "$KUBECONFIG or ~/.kube/config"
		if o.config.KubeConfig != nil && *o.config.KubeConfig != "" {
			where = *o.config.KubeConfig
		}
		return errf(ExitNoCluster, hintKubeconfig, "no kubeconfig: %s names no cluster", where)
	}
	return nil
}

// namespace is -n, else the kubeconfig context's namespace, else default.
func (o *options) namespace() (string, bool, error) {
	ns, explicit, err := o.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", false, kubeError(err, "the kubeconfig")
	}
	if o.config.Namespace != nil && *o.config.Namespace != "" {
		explicit = true
	}
	return ns, explicit, nil
}

// gatewayConfigured reports whether a gateway URL was given.
func (o *options) gatewayConfigured() bool {
	o.gateway.complete()
	return o.gateway.URL != ""
}

// gatewayClient returns the gateway client, or an ExitNoGateway error when
// no gateway is configured.
func (o *options) gatewayClient() (*gatewayClient, error) {
	if !o.gatewayConfigured() {
		return nil, errf(ExitNoGateway, hintGateway, "this command needs infera-gateway, and none is configured")
	}
	var cfg *rest.Config
	if o.gateway.TokenFile == "" {
		_, c, err := o.kubeClient()
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	return newGatewayClient(o.gateway, cfg)
}

// source picks where read commands get their data: the gateway when one is
// configured, else the API server (the note says so on stderr).
func (o *options) source() (*gatewayClient, error) {
	if o.gatewayConfigured() {
		return o.gatewayClient()
	}
	return nil, nil
}

func (o *options) note(format string, args ...any) {
	fmt.Fprintf(o.streams.ErrOut, "Note: "+format+"\n", args...)
}

const localNote = "no gateway configured (--gateway or $" + EnvGateway + "); tiers computed locally from the API server's Pods " +
	"with apis/tiering, the agent's function, and each node's " + "infera.io/priority-mapping"

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func writeString(w io.Writer, s string) { _, _ = io.WriteString(w, s) }
