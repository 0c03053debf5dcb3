// Package finalizers holds the reconcilers' shared finalizer step: make
// sure a live object carries the finalizer before any phase runs, so its
// cleanup can never be skipped.
package finalizers

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Ensure adds finalizer to a live obj that lacks it, with a merge patch.
// It reports whether it patched; the reconciler then returns and runs
// again on the update.
func Ensure(ctx context.Context, c client.Client, obj client.Object, finalizer string) (bool, error) {
	if !obj.GetDeletionTimestamp().IsZero() || controllerutil.ContainsFinalizer(obj, finalizer) {
		return false, nil
	}
	before, ok := obj.DeepCopyObject().(client.Object)
	if !ok {
		return false, fmt.Errorf("failed to copy %s", obj.GetName())
	}
	controllerutil.AddFinalizer(obj, finalizer)
	if err := c.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		return false, fmt.Errorf("failed to add finalizer %s to %s: %w", finalizer, obj.GetName(), err)
	}
	return true, nil
}
