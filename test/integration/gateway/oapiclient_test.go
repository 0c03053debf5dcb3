package gateway

import (
	"context"
	"net/http"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/test/integration/gateway/oapiclient"
)

// TestGeneratedOpenAPIClient talks to the gateway with a client nobody on
// this project wrote: oapi-codegen generated it (oapiclient/client.gen.go,
// `make generate-openapi-client`) from the OpenAPI 3 form of the document
// the gateway serves. It reads the fleet, a page of nodes by selector, one
// node and its pods, and checks them against the API server's own objects.
func TestGeneratedOpenAPIClient(t *testing.T) {
	ctx := t.Context()
	bearer := func(who string) oapiclient.ClientOption {
		return oapiclient.WithRequestEditorFn(func(_ context.Context, r *http.Request) error {
			if who != "" {
				r.Header.Set("Authorization", "Bearer "+tokens[who])
			}
			return nil
		})
	}
	c, err := oapiclient.NewClientWithResponses(server.URL, bearer(viewer))
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}

	fleet, err := c.ClusterServiceGetFleetWithResponse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fleet.StatusCode() != 200 || fleet.JSON200 == nil || fleet.JSON200.Nodes == nil || int(*fleet.JSON200.Nodes) != len(nodes.Items) {
		t.Fatalf("GetFleet = %d %s, want %d nodes", fleet.StatusCode(), fleet.Body, len(nodes.Items))
	}

	sel := "pool=b"
	list, err := c.ClusterServiceListNodesWithResponse(ctx, &oapiclient.ClusterServiceListNodesParams{LabelSelector: &sel})
	if err != nil {
		t.Fatal(err)
	}
	var want, got []string
	for _, n := range nodes.Items {
		if n.Labels["pool"] == "b" {
			want = append(want, n.Name)
		}
	}
	if list.JSON200 != nil && list.JSON200.Nodes != nil {
		for _, n := range *list.JSON200.Nodes {
			got = append(got, *n.Name)
		}
	}
	slices.Sort(want)
	if list.StatusCode() != 200 || !slices.Equal(got, want) {
		t.Errorf("ListNodes pool=b = %d %v, want %v", list.StatusCode(), got, want)
	}

	node, err := c.ClusterServiceGetNodeWithResponse(ctx, "gw-n1")
	if err != nil {
		t.Fatal(err)
	}
	if node.StatusCode() != 200 || node.JSON200 == nil || node.JSON200.Name == nil || *node.JSON200.Name != "gw-n1" {
		t.Errorf("GetNode gw-n1 = %d %s", node.StatusCode(), node.Body)
	}
	pods, err := c.ClusterServiceListNodePodsWithResponse(ctx, "gw-n1", &oapiclient.ClusterServiceListNodePodsParams{})
	if err != nil {
		t.Fatal(err)
	}
	tiers := map[string]string{}
	if pods.JSON200 != nil && pods.JSON200.Pods != nil {
		for _, p := range *pods.JSON200.Pods {
			tiers[*p.Name] = *p.Tier
		}
	}
	if pods.StatusCode() != 200 || tiers["crit"] != "critical" || tiers["volunteer"] != "background" {
		t.Errorf("ListNodePods gw-n1 = %d %v", pods.StatusCode(), tiers)
	}

	missing, err := c.ClusterServiceGetNodeWithResponse(ctx, "no-such-node")
	if err != nil {
		t.Fatal(err)
	}
	if missing.StatusCode() != 404 {
		t.Errorf("GetNode no-such-node = %d %s, want 404", missing.StatusCode(), missing.Body)
	}
	anon, err := oapiclient.NewClientWithResponses(server.URL, bearer(""))
	if err != nil {
		t.Fatal(err)
	}
	r, err := anon.ClusterServiceGetFleetWithResponse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode() != 401 {
		t.Errorf("GetFleet without a token = %d %s, want 401", r.StatusCode(), r.Body)
	}
}
