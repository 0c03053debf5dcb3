package inferapolicy

import (
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// selection is one policy's compiled selector and what it asks for.
type selection struct {
	name     string
	created  metav1.Time
	safeMode bool
	// mapping is spec.priorityMapping; nil when absent or invalid.
	mapping  *tiering.Thresholds
	deleting bool
	selector labels.Selector // nil when the selector is invalid
}

// compile reads a policy. selErr is an invalid selector; mapErr an invalid
// priorityMapping (the schema rejects it; this guards against an older CRD
// or a bypassed schema), naming the field.
func compile(p *inferav1alpha1.InferaPolicy) (s selection, selErr, mapErr error) {
	s = selection{name: p.Name, created: p.CreationTimestamp, safeMode: p.Spec.SafeMode, deleting: !p.DeletionTimestamp.IsZero()}
	if m := p.Spec.PriorityMapping; m != nil {
		t := tiering.Thresholds{Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low}
		if mapErr = t.ValidateField("spec.priorityMapping."); mapErr == nil {
			s.mapping = &t
		}
	}
	sel, selErr := metav1.LabelSelectorAsSelector(&p.Spec.NodeSelector)
	if selErr != nil {
		return s, selErr, mapErr
	}
	s.selector = sel
	return s, nil, mapErr
}

// sortOldestFirst orders policies by creation, then name: the oldest policy
// with a priorityMapping that selects a node decides the node's mapping
// (the OvercommitProfile rule).
func sortOldestFirst(ps []selection) {
	sort.SliceStable(ps, func(i, j int) bool {
		if !ps[i].created.Equal(&ps[j].created) {
			return ps[i].created.Before(&ps[j].created)
		}
		return ps[i].name < ps[j].name
	})
}

// mappingOutcome is what desiredMapping decided for one node.
type mappingOutcome struct {
	// winner is the policy whose mapping the node carries; empty when no
	// policy maps it or a hand-set value is kept.
	winner string
	// handSet is true when the node keeps a value the manager did not
	// write (no policy named, or unreadable): it is never changed.
	handSet bool
	// want lists the live policies with a mapping that select the node,
	// oldest first.
	want []selection
}

// overridden reports whether policy name selects the node with a mapping
// that is not the one the node gets.
func (o mappingOutcome) overridden(name string) (by string, ok bool) {
	var mine, winner *tiering.Thresholds
	for i := range o.want {
		if o.want[i].name == name {
			mine = o.want[i].mapping
		}
		if o.want[i].name == o.winner {
			winner = o.want[i].mapping
		}
	}
	switch {
	case mine == nil:
		return "", false
	case o.handSet:
		return "a hand-set " + wellknown.PriorityMappingAnnotation, true
	case winner != nil && *winner != *mine:
		return "the older InferaPolicy " + o.winner, true
	}
	return "", false
}

// desiredMapping returns the node's infera.io/priority-mapping as the given
// policies (oldest first) want it: the oldest live policy with a
// priorityMapping that selects the node writes its thresholds, naming
// itself; with none, a value that names a policy is removed. A value that
// names no policy, or cannot be read, was set by hand and is left alone. A
// policy whose selector is invalid keeps the nodes it already maps.
func desiredMapping(node *corev1.Node, policies []selection) (patch map[string]*string, out mappingOutcome) {
	cur, has := node.Annotations[wellknown.PriorityMappingAnnotation]
	var owner string
	if has {
		m, err := tiering.ParseNodeMapping(cur)
		if err != nil || m.Policy == "" {
			out.handSet = true
		}
		owner = m.Policy
	}
	for _, p := range policies {
		if p.deleting || p.mapping == nil {
			continue
		}
		if (p.selector == nil && owner == p.name) || (p.selector != nil && p.selector.Matches(labels.Set(node.Labels))) {
			out.want = append(out.want, p)
		}
	}
	patch = map[string]*string{}
	switch {
	case out.handSet:
	case len(out.want) > 0:
		w := out.want[0]
		out.winner = w.name
		if v := (tiering.NodeMapping{Thresholds: *w.mapping, Policy: w.name}).Marshal(); v != cur || !has {
			patch[wellknown.PriorityMappingAnnotation] = &v
		}
	case has:
		patch[wellknown.PriorityMappingAnnotation] = nil
	}
	return patch, out
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
