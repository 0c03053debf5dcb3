package explain

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

// SavingsTally sums what overcommit freed, pod by pod, into the Savings of
// /api/v1 (the gateway's GetSavings and inferactl's local fallback). The
// zero value is ready to use.
type SavingsTally struct {
	out  inferav1.Savings
	byNS map[string]*inferav1.NamespaceSavings
}

// Add counts p when it carries infera.io/original-cpu-requests; a value that
// does not parse, or that names containers p lacks, is listed in Invalid.
func (t *SavingsTally) Add(p *corev1.Pod) {
	sv, ok, err := wellknown.PodCPUSavings(p)
	if !ok {
		return
	}
	if err != nil {
		t.out.Invalid = append(t.out.Invalid, err.Error())
		return
	}
	if uerr := sv.UnknownError(p); uerr != nil {
		t.out.Invalid = append(t.out.Invalid, uerr.Error()+"; the pod's other containers are counted")
	}
	if t.byNS == nil {
		t.byNS = map[string]*inferav1.NamespaceSavings{}
	}
	ns := t.byNS[p.Namespace]
	if ns == nil {
		ns = &inferav1.NamespaceSavings{Namespace: p.Namespace}
		t.byNS[p.Namespace] = ns
		t.out.Namespaces = append(t.out.Namespaces, ns)
	}
	ns.PodsDeflated++
	ns.OriginalRequestMilli += sv.OriginalMilli
	ns.CurrentRequestMilli += sv.CurrentMilli
	ns.FreedMilli += sv.FreedMilli
	t.out.PodsDeflated++
	t.out.OriginalRequestMilli += sv.OriginalMilli
	t.out.CurrentRequestMilli += sv.CurrentMilli
	t.out.FreedMilli += sv.FreedMilli
}

// Savings returns the sums, namespaces ordered by name.
func (t *SavingsTally) Savings() *inferav1.Savings {
	slices.SortFunc(t.out.Namespaces, func(a, b *inferav1.NamespaceSavings) int { return strings.Compare(a.Namespace, b.Namespace) })
	return &t.out
}
