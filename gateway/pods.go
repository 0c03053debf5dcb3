package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/yaml"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// maxPodEvents bounds the Events GetPodDetails returns.
const maxPodEvents = 100

// GetPodDetails implements ClusterService: the pod's manifest and Events, each
// read as the caller, each failing on its own.
func (s *Service) GetPodDetails(ctx context.Context, req *inferav1.GetPodDetailsRequest) (*inferav1.PodDetails, error) {
	ns, name := req.GetNamespace(), req.GetName()
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "pods", Namespace: ns, Name: name}); err != nil {
		return nil, err
	}
	if ns == "" || name == "" {
		return nil, status.Error(codes.InvalidArgument, "namespace, name: both are required")
	}
	// Existence with the gateway's own read (it may get pods), so an
	// unknown pod is 404 whatever the caller may read.
	p, err := s.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "pod %s/%s not found", ns, name)
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to get pod %s/%s: %v", ns, name, err)
	}
	out := &inferav1.PodDetails{Namespace: ns, Name: name, Node: p.Spec.NodeName}
	u, _ := UserFrom(ctx)
	kc, err := s.impersonate(u)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if mine, err := kc.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		out.ManifestError, out.ManifestErrorCode = partError("get pod "+ns+"/"+name, err)
	} else {
		mine.ManagedFields = nil
		mine.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
		b, err := yaml.Marshal(mine)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "failed to encode pod %s/%s: %v", ns, name, err)
		}
		out.Manifest = string(b)
	}
	sel := fields.Set{"involvedObject.kind": "Pod", "involvedObject.name": name}.AsSelector().String()
	evs, err := kc.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		out.EventsError, out.EventsErrorCode = partError("list events in namespace "+ns, err)
		return out, nil
	}
	items := slices.DeleteFunc(evs.Items, func(e corev1.Event) bool {
		// An older pod of the same name is another object.
		return e.InvolvedObject.UID != "" && e.InvolvedObject.UID != p.UID
	})
	slices.SortStableFunc(items, func(a, b corev1.Event) int { return eventTime(&b).Compare(eventTime(&a)) })
	for i := range items[:min(len(items), maxPodEvents)] {
		e := &items[i]
		count := e.Count
		if count == 0 {
			count = 1
		}
		src := e.Source.Component
		if src == "" {
			src = e.ReportingController
		}
		out.Events = append(out.Events, &inferav1.PodEvent{Type: e.Type, Reason: e.Reason, Message: e.Message, Count: count,
			LastTime: timestamppb.New(eventTime(e)), Source: src})
	}
	return out, nil
}

// partError turns a failed read as the caller into a message and its HTTP
// code, for the part of an answer it concerns.
func partError(what string, err error) (string, int32) {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return fmt.Sprintf("failed to %s as the caller: %s", what, se.Status().Message), se.Status().Code
	}
	return fmt.Sprintf("failed to %s as the caller: %v", what, err), 503
}

func eventTime(e *corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}
