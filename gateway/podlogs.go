package gateway

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/internal/kubeauth"
)

const (
	// defaultTailLines and maxTailLines bound GetPodLogs.tail_lines.
	defaultTailLines = 200
	maxTailLines     = 5000
	// maxLogBytes bounds the log text one answer carries.
	maxLogBytes = 1 << 20
)

// GetPodLogs implements ClusterService: the tail of one container's log,
// read as the caller, so the API server's RBAC on pods/log decides.
func (s *Service) GetPodLogs(ctx context.Context, req *inferav1.GetPodLogsRequest) (*inferav1.PodLogs, error) {
	ns, name := req.GetNamespace(), req.GetName()
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "pods", Namespace: ns, Name: name}); err != nil {
		return nil, err
	}
	if ns == "" || name == "" {
		return nil, status.Error(codes.InvalidArgument, "namespace, name: both are required")
	}
	tail := req.GetTailLines()
	if tail == 0 {
		tail = defaultTailLines
	}
	if tail < 1 || tail > maxTailLines {
		return nil, status.Errorf(codes.InvalidArgument, "tail_lines: %d is out of range [1, %d]", req.GetTailLines(), maxTailLines)
	}
	// The container list with the gateway's own read (it may get pods), so
	// a caller refused the log can still be offered the choice.
	p, err := s.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "pod %s/%s not found", ns, name)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to get pod %s/%s: %v", ns, name, err)
	}
	out := &inferav1.PodLogs{Namespace: ns, Name: name, TailLines: tail, Containers: containerNames(p)}
	out.Container = req.GetContainer()
	switch {
	case out.Container == "" && len(p.Spec.Containers) > 0:
		out.Container = p.Spec.Containers[0].Name
	case out.Container == "":
		return nil, status.Errorf(codes.InvalidArgument, "pod %s/%s has no containers", ns, name)
	case !slices.Contains(out.Containers, out.Container):
		return nil, status.Errorf(codes.InvalidArgument, "container: pod %s/%s has no container %q (it has %v)", ns, name, out.Container, out.Containers)
	}
	// A SubjectAccessReview of the caller's get on pods/log first, so a
	// refusal names the caller and the resource (the API server's own
	// refusal of the log read carries no message); the read itself is
	// then made as the caller as well.
	u, _ := UserFrom(ctx)
	logAttrs := kubeauth.Attributes{Verb: "get", Resource: "pods", Subresource: "log", Namespace: ns, Name: name}
	d, err := s.auth.rv.Authorize(ctx, u, logAttrs)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "authorization: %v", err)
	}
	if !d.Allowed {
		out.Error, out.ErrorCode = fmt.Sprintf("user %q cannot %s", u.Username, logAttrs), 403
		if d.Reason != "" {
			out.Error += ": " + d.Reason
		}
		return out, nil
	}
	kc, err := s.impersonate(u)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	limit := int64(maxLogBytes + 1)
	tl := int64(tail)
	b, err := kc.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{
		Container: out.Container, TailLines: &tl, LimitBytes: &limit, Previous: req.GetPrevious(),
	}).DoRaw(ctx)
	if err != nil {
		out.Error, out.ErrorCode = partError("get the log of "+ns+"/"+name+" container "+out.Container, err)
		return out, nil
	}
	if len(b) > maxLogBytes {
		b = b[:maxLogBytes]
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			b = b[:i+1]
		}
		out.Truncated = true
	}
	out.Text = string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
	return out, nil
}

// containerNames lists the pod's init containers, then its containers.
func containerNames(p *corev1.Pod) []string {
	out := make([]string, 0, len(p.Spec.InitContainers)+len(p.Spec.Containers))
	for _, c := range p.Spec.InitContainers {
		out = append(out, c.Name)
	}
	for _, c := range p.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}
