package overcommitprofile

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/apis/wellknown"
)

func TestFreed(t *testing.T) {
	c := func(name, req string) corev1.Container {
		return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req)}}}
	}
	pod := func(annotation string, init []corev1.Container, cs ...corev1.Container) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{InitContainers: init, Containers: cs}}
		if annotation != "" {
			p.ObjectMeta = metav1.ObjectMeta{Annotations: map[string]string{wellknown.OriginalCPURequestsAnnotation: annotation}}
		}
		return p
	}
	tests := map[string]struct {
		pod    *corev1.Pod
		freed  int64
		parsed bool
	}{
		"no annotation":               {pod("", nil, c("a", "1")), 0, false},
		"garbage":                     {pod("{nope", nil, c("a", "1")), 0, false},
		"deflated app and init":       {pod(`{"a":"2","i":"1"}`, []corev1.Container{c("i", "500m")}, c("a", "1")), 1500, true},
		"dry run: nothing freed":      {pod(`{"a":"1"}`, nil, c("a", "1")), 0, true},
		"unknown container ignored":   {pod(`{"gone":"4","a":"1"}`, nil, c("a", "250m")), 750, true},
		"raised request never counts": {pod(`{"a":"100m"}`, nil, c("a", "1")), 0, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f, ok := Freed(tc.pod)
			if f != tc.freed || ok != tc.parsed {
				t.Errorf("Freed = %d, %v; want %d, %v", f, ok, tc.freed, tc.parsed)
			}
		})
	}
}
