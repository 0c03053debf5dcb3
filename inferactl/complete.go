package inferactl

import (
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Dynamic completion reads names from the API server with the user's
// kubeconfig; any error completes nothing.

func (o *options) completeNodes(c *cobra.Command, prefix string) []string {
	kube, _, err := o.kubeClient()
	if err != nil {
		return nil
	}
	l, err := kube.CoreV1().Nodes().List(c.Context(), metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range l.Items {
		if strings.HasPrefix(n.Name, prefix) {
			out = append(out, n.Name)
		}
	}
	return out
}

func (o *options) completePods(c *cobra.Command, prefix string) []string {
	kube, _, err := o.kubeClient()
	if err != nil {
		return nil
	}
	ns, _, err := o.namespace()
	if err != nil {
		return nil
	}
	l, err := kube.CoreV1().Pods(ns).List(c.Context(), metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range l.Items {
		if strings.HasPrefix(p.Name, prefix) {
			out = append(out, p.Name)
		}
	}
	return out
}

const noFiles = cobra.ShellCompDirectiveNoFileComp

// nodeArgs completes node names for every argument.
func (o *options) nodeArgs(c *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
	return o.completeNodes(c, prefix), noFiles
}

// nodeFlag completes a --node flag.
func (o *options) nodeFlag(c *cobra.Command) {
	_ = c.RegisterFlagCompletionFunc("node", func(c *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		return o.completeNodes(c, prefix), noFiles
	})
}
