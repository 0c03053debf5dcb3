package tiering

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podOpt shapes a test pod.
type podOpt func(*corev1.Pod)

func newPod(opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withPriority(class string, prio int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.PriorityClassName = class
		p.Spec.Priority = &prio
	}
}

func withClassOnly(class string) podOpt {
	return func(p *corev1.Pod) { p.Spec.PriorityClassName = class }
}

func withAnnotation(v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["infera.io/tier"] = v
	}
}

func withStatusQOS(q corev1.PodQOSClass) podOpt {
	return func(p *corev1.Pod) { p.Status.QOSClass = q }
}

// rl builds a ResourceList from "cpu", "memory" pairs; "" skips the entry.
func rl(cpu, mem string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		l[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	if len(l) == 0 {
		return nil
	}
	return l
}

func res(reqCPU, reqMem, limCPU, limMem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: rl(reqCPU, reqMem), Limits: rl(limCPU, limMem)}
}

func withContainer(name string, r corev1.ResourceRequirements) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Resources: r})
	}
}

func withInit(name string, r corev1.ResourceRequirements) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, Resources: r})
	}
}

func withSidecar(name string, r corev1.ResourceRequirements) podOpt {
	return func(p *corev1.Pod) {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: name, Resources: r, RestartPolicy: &always})
	}
}

func withPodResources(r corev1.ResourceRequirements) podOpt {
	return func(p *corev1.Pod) { p.Spec.Resources = &r }
}

func withOverhead(cpu string) podOpt {
	return func(p *corev1.Pod) { p.Spec.Overhead = rl(cpu, "") }
}

// withRawCPU sets a container's CPU quantities without parsing, so tests
// can build values the API server would reject.
func withRawCPU(name string, req, lim *resource.Quantity) podOpt {
	return func(p *corev1.Pod) {
		c := corev1.Container{Name: name}
		if req != nil {
			c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: *req}
		}
		if lim != nil {
			c.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: *lim}
		}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
}
