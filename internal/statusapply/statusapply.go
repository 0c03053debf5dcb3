package statusapply

import (
	"context"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager owns the status fields the manager applies.
const FieldManager = "infera-manager"

// Apply server-side applies status as obj's whole status subresource.
func Apply(ctx context.Context, c client.Client, obj client.Object, status any) error {
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return fmt.Errorf("failed to find the kind of %s: %w", obj.GetName(), err)
	}
	b, err := json.Marshal(status)
	if err != nil {
		return fmt.Errorf("failed to marshal status of %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	var st map[string]any
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("failed to convert status of %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": st}}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	u.SetNamespace(obj.GetNamespace())
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("failed to apply status of %s %s: %w", gvk.Kind, obj.GetName(), err)
	}
	return nil
}
