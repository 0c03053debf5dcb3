package localcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	kscheme "github.com/infera-io/temper/internal/scheme"
)

// Options configure the local cluster.
type Options struct {
	// BinDir holds kube-apiserver, etcd and kubectl (make controlplane).
	BinDir string
	// CRDDir holds the CRD manifests to install.
	CRDDir string
	// StateDir receives the kubeconfig (StateDir/kubeconfig).
	StateDir string
	// NodeName is the Node this machine registers as.
	NodeName string
	// Out receives the human-readable banner.
	Out io.Writer
	// Log receives structured progress.
	Log logr.Logger
	// GatewayRBACDir, when set, holds the gateway's user_roles.yaml: the
	// roles are installed and a token of an infera-operator
	// ServiceAccount is written to StateDir/gateway-token for the banner's
	// curl example.
	GatewayRBACDir string
	// AgentBaseConfig, when set with GatewayRBACDir, is the agent's TOML
	// config: WireAgent adds the agent's gRPC TLS listener to it and writes
	// the gateway's configuration to reach it (Wiring).
	AgentBaseConfig string
	// Components returns the platform binaries to start once the control
	// plane is seeded, given the admin kubeconfig path and the agent wiring
	// (empty without AgentBaseConfig).
	Components func(kubeconfig string, w Wiring) []Component
}

// Cluster is a running local control plane.
type Cluster struct {
	Kubeconfig string
	Client     client.Client
	Wiring     Wiring
	env        *envtest.Environment
	procs      []*process
	stopReaper context.CancelFunc
	reaperDone chan struct{}
}

// Start brings the control plane up and seeds it. The caller must Stop it.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if err := CheckBinaries(o.BinDir); err != nil {
		return nil, err
	}
	scheme, err := kscheme.New()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    o.BinDir,
		CRDDirectoryPaths:        []string{o.CRDDir},
		ErrorIfCRDPathMissing:    true,
		Scheme:                   scheme,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	o.Log.Info("Starting etcd and kube-apiserver", "binDir", o.BinDir)
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("failed to start the control plane: %w", err)
	}
	c := &Cluster{env: env}
	if err := c.seed(ctx, o, cfg.Host); err != nil {
		_ = env.Stop()
		return nil, err
	}
	rctx, stopReaper := context.WithCancel(context.WithoutCancel(ctx))
	c.stopReaper, c.reaperDone = stopReaper, make(chan struct{})
	go func() {
		defer close(c.reaperDone)
		reapPods(rctx, c.Client, o.NodeName, o.Log)
	}()
	if o.Components != nil {
		for _, comp := range o.Components(c.Kubeconfig, c.Wiring) {
			p, err := startComponent(o.BinDir, o.StateDir, comp, o.Log)
			if err != nil {
				_ = c.Stop()
				return nil, err
			}
			c.procs = append(c.procs, p)
		}
	}
	return c, nil
}

func (c *Cluster) seed(ctx context.Context, o Options, host string) error {
	c.Kubeconfig = filepath.Join(o.StateDir, "kubeconfig")
	admin, err := AddAdmin(c.env, c.Kubeconfig)
	if err != nil {
		return err
	}
	cl, err := client.New(admin, client.Options{Scheme: c.env.Scheme})
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	c.Client = cl
	o.Log.Info("Installing PriorityClasses")
	if err := InstallPriorityClasses(ctx, cl); err != nil {
		return err
	}
	if o.GatewayRBACDir != "" {
		tokenPath := filepath.Join(o.StateDir, "gateway-token")
		if err := GatewayAccess(ctx, admin, cl, o.GatewayRBACDir, tokenPath); err != nil {
			return err
		}
		if o.AgentBaseConfig != "" {
			o.Log.Info("Wiring the gateway to the agent (TLS gRPC on loopback)", "address", AgentGRPCAddress)
			if c.Wiring, err = WireAgent(ctx, admin, cl, o.GatewayRBACDir, o.StateDir, o.AgentBaseConfig); err != nil {
				return err
			}
		}
		defer fmt.Fprintf(o.Out, `The dashboard is at http://127.0.0.1:8090/ (sign in with the token in %[1]s).
The cluster API (infera-gateway) is on http://127.0.0.1:8090, as an infera-operator:

  TOKEN=$(cat %[1]s)
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8090/api/v1/fleet
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8090/api/v1/nodes/%[2]s
  curl http://127.0.0.1:8090/api/v1/openapi.json

The same from the command line (bin/kubectl-infera is the kubectl plugin, docs/cli.md):

  export INFERA_GATEWAY=http://127.0.0.1:8090 INFERA_GATEWAY_TOKEN_FILE=%s
  kubectl infera status

`, tokenPath, o.NodeName, tokenPath)
	}
	node, err := MachineNode(o.NodeName)
	if err != nil {
		return err
	}
	o.Log.Info("Registering this machine as a Node", "node", o.NodeName)
	if err := RegisterNode(ctx, cl, node); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, `
Temper local control plane is up (API server %s).

  export KUBECONFIG=%s
  kubectl get nodes
  kubectl get priorityclasses
  kubectl get nodeqosreports,inferapolicies,overcommitprofiles
  kubectl get node %s -o jsonpath='{.metadata.annotations}'

Component logs are in %s/*.log. Ctrl-C stops it and every process it started.
`, host, c.Kubeconfig, o.NodeName, o.StateDir)
	return nil
}

// Stop stops the components, all at once so that a slow one does not hold
// up the others, then the control plane, and removes the kubeconfig it
// wrote. The API server stays up until every component has stopped, so an
// agent standing down can still reach it.
func (c *Cluster) Stop() error {
	errCh := make(chan error, len(c.procs))
	for _, p := range c.procs {
		go func() { errCh <- p.stop(context.Background()) }()
	}
	var errs []error
	for range c.procs {
		if err := <-errCh; err != nil {
			errs = append(errs, err)
		}
	}
	c.procs = nil
	if c.stopReaper != nil {
		c.stopReaper()
		<-c.reaperDone
	}
	if c.Kubeconfig != "" {
		_ = os.Remove(c.Kubeconfig)
	}
	if err := c.env.Stop(); err != nil {
		errs = append(errs, fmt.Errorf("failed to stop the control plane: %w", err))
	}
	return errors.Join(errs...)
}

// Run starts the cluster, blocks until ctx is done, then stops it.
func Run(ctx context.Context, o Options) error {
	c, err := Start(ctx, o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	o.Log.Info("Shutting down")
	return c.Stop()
}
