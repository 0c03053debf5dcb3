package localcluster

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// reapPods does the one part of a kubelet's job that the API server waits
// for: a pod on nodeName that is being deleted stays Terminating until its
// kubelet confirms the containers are gone. No kubelet runs here and no
// container ever started, so every second it confirms for it (a delete with
// a zero grace period). Without it a deleted pod, and so its namespace,
// would stay Terminating for good.
func reapPods(ctx context.Context, c client.Client, nodeName string, log logr.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var pods corev1.PodList
		if err := c.List(ctx, &pods); err != nil {
			continue // the API server may be stopping; try again
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.Spec.NodeName != nodeName || p.DeletionTimestamp == nil {
				continue
			}
			err := c.Delete(ctx, p, client.GracePeriodSeconds(0), client.Preconditions{UID: &p.UID})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
				log.Error(err, "Failed to confirm a pod's deletion in the kubelet's place", "pod", client.ObjectKeyFromObject(p))
			}
		}
	}
}
