package nodeagent

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// RunOptions are what cmd/infera-agent collects from flags and environment.
type RunOptions struct {
	ConfigPath string
	Kubeconfig string
	NodeName   string
	Log        logr.Logger
}

// Run loads the config, connects to the API server and runs the agent
// until ctx is done. A broken config refuses to start with a message naming
// the key.
func Run(ctx context.Context, ro RunOptions) error {
	if ro.NodeName == "" {
		return errors.New("NODE_NAME is not set: the agent must know its node (downward API spec.nodeName)")
	}
	cfg := configv1alpha1.DefaultAgentConfiguration()
	if ro.ConfigPath != "" {
		var err error
		if cfg, err = configv1alpha1.LoadAgentConfiguration(ro.ConfigPath); err != nil {
			return err
		}
	}
	rc, err := restConfig(ro.Kubeconfig)
	if err != nil {
		return err
	}
	rc.UserAgent = "infera-agent/" + ro.NodeName
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	a, err := New(Options{Config: cfg, NodeName: ro.NodeName, Client: cs, Log: ro.Log})
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		if c, err := rest.InClusterConfig(); err == nil {
			return c, nil
		}
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("failed to load kubeconfig %q: %w", kubeconfig, err)
	}
	return c, nil
}
