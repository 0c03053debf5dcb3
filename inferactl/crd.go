package inferactl

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
)

// crdGroupVersion is where Temper's CRDs are served.
const crdGroupVersion = "infera.io/v1alpha1"

// newCRDCommand lists one of Temper's CRDs (cluster-scoped) straight from
// the API server. The default output is the server-side table, so the
// columns are the CRD's printer columns (-o wide adds the priority-1 ones),
// exactly as kubectl get shows them.
func newCRDCommand(o *options, use, what, resource string) *cobra.Command {
	var p *printer
	var selector string
	c := &cobra.Command{
		Use:   use + " [NAME...]",
		Short: "List " + what + ", with the CRD's printer columns",
		Example: `  NAME ` + use + `
  NAME ` + use + ` -o wide
  NAME ` + use + ` -o yaml`,
		RunE: func(c *cobra.Command, args []string) error {
			if err := p.check(); err != nil {
				return err
			}
			kube, _, err := o.kubeClient()
			if err != nil {
				return err
			}
			if err := checkCRD(kube, resource); err != nil {
				return err
			}
			if p.human() {
				t, err := serverTable(c.Context(), kube, resource, selector, args)
				if err != nil {
					return err
				}
				if len(t.Rows) == 0 {
					fmt.Fprintf(o.streams.ErrOut, "No %s found.\n", resource)
					return nil
				}
				return p.print(o.streams.Out, t, nil)
			}
			l, err := serverList(c.Context(), kube, resource, selector, args)
			if err != nil {
				return err
			}
			return p.print(o.streams.Out, nil, l)
		},
	}
	c.Flags().StringVarP(&selector, "selector", "l", "", "label selector")
	p = addPrinter(c, true)
	return c
}

// checkCRD asks discovery whether the resource is served, so that a
// missing CRD is reported as such rather than as a 404.
func checkCRD(kube kubernetes.Interface, resource string) error {
	rl, err := kube.Discovery().ServerResourcesForGroupVersion(crdGroupVersion)
	if err != nil && !apierrors.IsNotFound(err) {
		return kubeError(err, "the API server's discovery")
	}
	if err == nil {
		for _, r := range rl.APIResources {
			if r.Name == resource {
				return nil
			}
		}
	}
	return errf(ExitNoCRDs, hintCRDs, "the %s.infera.io CRD is not installed in this cluster (%s does not serve %s)", resource, crdGroupVersion, resource)
}

func serverTable(ctx context.Context, kube kubernetes.Interface, resource, selector string, names []string) (*metav1.Table, error) {
	out := &metav1.Table{}
	get := func(name string) error {
		req := kube.CoreV1().RESTClient().Get().AbsPath("/apis/"+crdGroupVersion, resource, name).
			SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
		if name == "" && selector != "" {
			req = req.Param("labelSelector", selector)
		}
		raw, err := req.DoRaw(ctx)
		if err != nil {
			return kubeError(err, fmt.Sprintf("%s %q", resource, name))
		}
		var t metav1.Table
		if err := json.Unmarshal(raw, &t); err != nil {
			return fmt.Errorf("failed to decode the %s table: %w", resource, err)
		}
		if len(out.ColumnDefinitions) == 0 {
			out.ColumnDefinitions = t.ColumnDefinitions
		}
		out.Rows = append(out.Rows, t.Rows...)
		return nil
	}
	if len(names) == 0 {
		return out, get("")
	}
	for _, n := range names {
		if err := get(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func serverList(ctx context.Context, kube kubernetes.Interface, resource, selector string, names []string) (*unstructured.UnstructuredList, error) {
	get := func(name string) ([]byte, error) {
		req := kube.CoreV1().RESTClient().Get().AbsPath("/apis/"+crdGroupVersion, resource, name)
		if name == "" && selector != "" {
			req = req.Param("labelSelector", selector)
		}
		raw, err := req.DoRaw(ctx)
		if err != nil {
			return nil, kubeError(err, fmt.Sprintf("%s %q", resource, name))
		}
		return raw, nil
	}
	if len(names) == 0 {
		raw, err := get("")
		if err != nil {
			return nil, err
		}
		l := &unstructured.UnstructuredList{}
		if err := l.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		for i := range l.Items {
			l.Items[i].SetManagedFields(nil)
		}
		return l, nil
	}
	var items []*unstructured.Unstructured
	for _, n := range names {
		raw, err := get(n)
		if err != nil {
			return nil, err
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, err
		}
		u.SetManagedFields(nil)
		items = append(items, u)
	}
	return list(items), nil
}
