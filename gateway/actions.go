package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

// Node Event reasons of the safe-mode actions.
const (
	EventReasonSafeModeRequested = "SafeModeRequested"
	EventReasonSafeModeWithdrawn = "SafeModeWithdrawn"
	// EventNamespace holds the Node Events (cluster-scoped objects' events
	// live in "default", as the kubelet's do).
	EventNamespace = metav1.NamespaceDefault
	fieldManager   = "infera-gateway"
	maxReasonBytes = 1024
	actionWorkers  = 4
)

// Impersonating returns a function that builds a client acting as the
// caller: Impersonate-User and Impersonate-Group, so that the API server's
// RBAC decides and its audit log names the caller (and the gateway as the
// impersonator). User extras and UID are not forwarded: impersonating them
// would need more RBAC than the gateway holds, and RBAC does not use them.
func Impersonating(cfg *rest.Config) func(u *authnv1.UserInfo) (kubernetes.Interface, error) {
	return func(u *authnv1.UserInfo) (kubernetes.Interface, error) {
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: u.Username, Groups: u.Groups}
		cs, err := kubernetes.NewForConfig(c)
		if err != nil {
			return nil, fmt.Errorf("failed to create an impersonating client: %w", err)
		}
		return cs, nil
	}
}

func checkReason(r string) error {
	switch {
	case strings.TrimSpace(r) == "":
		return status.Error(codes.InvalidArgument, "reason: required; say why safe mode changes (it goes into the audit log and the Node Event)")
	case len(r) > maxReasonBytes:
		return status.Errorf(codes.InvalidArgument, "reason: %d bytes, more than the %d allowed", len(r), maxReasonBytes)
	}
	return nil
}

// SetNodeSafeMode implements ClusterService.
func (s *Service) SetNodeSafeMode(ctx context.Context, req *inferav1.SetNodeSafeModeRequest) (*inferav1.SafeModeResult, error) {
	if err := s.authorize(ctx, Attributes{Verb: "update", Resource: "safemodes", Name: req.GetName()}); err != nil {
		return nil, err
	}
	annotate(ctx, AuditActionKey, action(req.GetEnabled()))
	annotate(ctx, AuditReasonKey, req.GetReason())
	annotate(ctx, AuditNodesKey, req.GetName())
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetName())
	if err != nil {
		return nil, err
	}
	u, _ := UserFrom(ctx)
	kc, err := s.impersonate(u)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	res := s.setSafeMode(ctx, kc, u, n, req.GetEnabled(), req.GetForce(), req.GetReason())
	if res.Error != "" {
		return nil, status.Error(grpcCode(int(res.ErrorCode)), res.Error)
	}
	return res, nil
}

// SetSafeMode implements ClusterService.
func (s *Service) SetSafeMode(ctx context.Context, req *inferav1.SetSafeModeRequest) (*inferav1.SetSafeModeResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "update", Resource: "safemodes"}); err != nil {
		return nil, err
	}
	annotate(ctx, AuditActionKey, action(req.GetEnabled()))
	annotate(ctx, AuditReasonKey, req.GetReason())
	annotate(ctx, AuditSelectorKey, req.GetLabelSelector())
	if strings.TrimSpace(req.GetLabelSelector()) == "" {
		return nil, status.Error(codes.InvalidArgument, "label_selector: required; to change one node use POST /api/v1/nodes/{name}:setSafeMode")
	}
	sel, err := parseSelector("label_selector", req.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	ns, err := s.listNodes(sel)
	if err != nil {
		return nil, err
	}
	if len(ns) > int(s.cfg.MaxSelectorTargets) {
		return nil, status.Errorf(codes.InvalidArgument, "label_selector: matches %d nodes, more than the %d one action may change (maxSelectorTargets)", len(ns), s.cfg.MaxSelectorTargets)
	}
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.Name
	}
	annotate(ctx, AuditNodesKey, strings.Join(names, ","))
	u, _ := UserFrom(ctx)
	kc, err := s.impersonate(u)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := &inferav1.SetSafeModeResponse{Results: make([]*inferav1.SafeModeResult, len(ns))}
	var wg sync.WaitGroup
	sem := make(chan struct{}, actionWorkers)
	for i, n := range ns {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out.Results[i] = s.setSafeMode(ctx, kc, u, n, req.GetEnabled(), req.GetForce(), req.GetReason())
		})
	}
	wg.Wait()
	for _, r := range out.Results {
		if r.Error != "" {
			out.Failed++
		}
	}
	return out, nil
}

func action(enabled bool) string {
	if enabled {
		return "safe-mode-on"
	}
	return "safe-mode-off"
}

// setSafeMode patches one Node's safe-mode annotation as the caller, then
// records a Node Event (as the gateway) and a fleet event. A node whose safe
// mode an InferaPolicy owns is refused unless force: the manager would put
// the policy's value back, so the change would not last.
func (s *Service) setSafeMode(ctx context.Context, kc kubernetes.Interface, u *authnv1.UserInfo, n *corev1.Node, enabled, force bool, reason string) *inferav1.SafeModeResult {
	res := &inferav1.SafeModeResult{Node: n.Name}
	before := wellknown.IsSafeModeRequested(n.Annotations)
	if owner := n.Annotations[wellknown.SafeModeOwnerAnnotation]; owner != "" && !force {
		res.SafeModeRequested = before
		res.ErrorCode = 409
		res.Error = fmt.Sprintf("node %q: safe mode is owned by InferaPolicy %s (annotation %s); change the policy, or set force to change the node anyway (the manager may set the policy's value again)",
			n.Name, owner, wellknown.SafeModeOwnerAnnotation)
		return res
	}
	var value any // nil removes the annotation
	if enabled {
		value = wellknown.SafeModeRequestedValue
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{wellknown.SafeModeRequestedAnnotation: value}}})
	got, err := kc.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager})
	if err != nil {
		res.Error = fmt.Sprintf("failed to patch node %q as %q: %v", n.Name, u.Username, err)
		res.ErrorCode = 500
		var se apierrors.APIStatus
		if errors.As(err, &se) && se.Status().Code != 0 {
			res.ErrorCode = se.Status().Code
		}
		res.SafeModeRequested = before
		return res
	}
	res.SafeModeRequested = wellknown.IsSafeModeRequested(got.Annotations)
	res.Changed = before != res.SafeModeRequested
	reasonCode, verb := EventReasonSafeModeWithdrawn, "withdrawn"
	if enabled {
		reasonCode, verb = EventReasonSafeModeRequested, "requested"
	}
	msg := fmt.Sprintf("Safe mode %s by %s via infera-gateway: %s", verb, u.Username, reason)
	if !res.Changed {
		msg += " (already in that state)"
	}
	now := metav1.NewTime(s.now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: n.Name + ".", Namespace: EventNamespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: got.UID},
		Reason:         reasonCode, Message: msg, Type: corev1.EventTypeNormal,
		Source:         corev1.EventSource{Component: "infera-gateway"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "infera.io/gateway", Action: action(enabled),
	}
	if _, err := s.kube.CoreV1().Events(EventNamespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		annotate(ctx, "infera.io/event-error", err.Error())
	}
	s.events.publish(&inferav1.ClusterEvent{Type: "Action", Node: n.Name, Message: msg})
	return res
}

// grpcCode maps an HTTP status of a failed Kubernetes call onto the code
// grpc-gateway maps back to the same status.
func grpcCode(httpCode int) codes.Code {
	switch httpCode {
	case 400:
		return codes.InvalidArgument
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.NotFound
	case 409:
		return codes.Aborted
	case 429:
		return codes.ResourceExhausted
	default:
		return codes.Unavailable
	}
}
