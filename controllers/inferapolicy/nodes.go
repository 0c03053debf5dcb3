package inferapolicy

import (
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

// selection is one policy's compiled selector.
type selection struct {
	name     string
	safeMode bool
	deleting bool
	selector labels.Selector // nil when the selector is invalid
}

func compile(p *inferav1alpha1.InferaPolicy) (selection, error) {
	s := selection{name: p.Name, safeMode: p.Spec.SafeMode, deleting: !p.DeletionTimestamp.IsZero()}
	sel, err := metav1.LabelSelectorAsSelector(&p.Spec.NodeSelector)
	if err != nil {
		return s, err
	}
	s.selector = sel
	return s, nil
}

// ParseOwners reads infera.io/safe-mode-requested-by: the comma-separated
// names of the policies that set the node's safe-mode value.
func ParseOwners(annotations map[string]string) []string {
	v := annotations[wellknown.SafeModeOwnerAnnotation]
	if v == "" {
		return nil
	}
	var out []string
	for _, n := range strings.Split(v, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// desiredAnnotations returns the node's safe-mode annotations as the given
// policies want them: the value of each key, or nil to remove it. changed is
// false when the node already matches.
//
//   - wanted (some live policy selecting the node asks for safe mode): the
//     value becomes "true" and the owners are those policies, unless an
//     operator set "true" by hand (value present, no owners), which is left
//     alone and not adopted;
//   - not wanted and owned: the owners go, and the value too when it is
//     still "true" (an operator who changed it has taken it over);
//   - not wanted and not owned: nothing changes.
//
// A policy whose selector is invalid keeps the nodes it already owns: a typo
// must not lift safe mode.
func desiredAnnotations(node *corev1.Node, policies []selection) (patch map[string]*string, changed bool) {
	owners := ParseOwners(node.Annotations)
	var want []string
	for _, p := range policies {
		if p.deleting || !p.safeMode {
			continue
		}
		switch {
		case p.selector == nil:
			if slices.Contains(owners, p.name) {
				want = append(want, p.name)
			}
		case p.selector.Matches(labels.Set(node.Labels)):
			want = append(want, p.name)
		}
	}
	sort.Strings(want)
	value, hasValue := node.Annotations[wellknown.SafeModeRequestedAnnotation]
	patch = map[string]*string{}
	switch {
	case len(want) > 0:
		if len(owners) == 0 && hasValue && value == wellknown.SafeModeRequestedValue {
			return nil, false // hand-set: leave it and do not adopt it
		}
		if value != wellknown.SafeModeRequestedValue {
			v := wellknown.SafeModeRequestedValue
			patch[wellknown.SafeModeRequestedAnnotation] = &v
		}
		if o := strings.Join(want, ","); !slices.Equal(owners, want) || node.Annotations[wellknown.SafeModeOwnerAnnotation] != o {
			patch[wellknown.SafeModeOwnerAnnotation] = &o
		}
	case len(owners) > 0 || hasKey(node.Annotations, wellknown.SafeModeOwnerAnnotation):
		patch[wellknown.SafeModeOwnerAnnotation] = nil
		if hasValue && value == wellknown.SafeModeRequestedValue {
			patch[wellknown.SafeModeRequestedAnnotation] = nil
		}
	}
	return patch, len(patch) > 0
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// apply sets or deletes the patched keys on annotations (a copy).
func apply(annotations map[string]string, patch map[string]*string) map[string]string {
	out := make(map[string]string, len(annotations)+len(patch))
	for k, v := range annotations {
		out[k] = v
	}
	for k, v := range patch {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = *v
		}
	}
	return out
}
