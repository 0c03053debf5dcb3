package tiering

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/infera-io/temper/apis/wellknown"
)

// NodeMappingVersion is the version of the NodeMapping document this package
// writes and the only one it reads.
const NodeMappingVersion = 1

// maxNodeMappingBytes bounds what ParseNodeMapping reads: a real document is
// under 120 bytes.
const maxNodeMappingBytes = 1 << 10

// NodeMapping is the value of the infera.io/priority-mapping Node
// annotation: the thresholds every component that tiers pods uses for pods
// on that node.
//
//	{"v":1,"policy":"gpu-nodes","critical":500000,"high":50000,"normal":0,"low":-100}
type NodeMapping struct {
	Thresholds Thresholds
	// Policy is the InferaPolicy the manager copied the thresholds from;
	// empty for a value an operator set by hand. The manager only changes
	// or removes values that name a policy.
	Policy string
}

// nodeMappingJSON is the wire form; pointers tell a missing field from 0.
type nodeMappingJSON struct {
	V        *int   `json:"v"`
	Policy   string `json:"policy,omitempty"`
	Critical *int32 `json:"critical"`
	High     *int32 `json:"high"`
	Normal   *int32 `json:"normal"`
	Low      *int32 `json:"low"`
}

// Marshal renders the compact annotation value. Equal mappings render to
// equal bytes.
func (m NodeMapping) Marshal() string {
	v := NodeMappingVersion
	t := m.Thresholds
	b, err := json.Marshal(nodeMappingJSON{V: &v, Policy: m.Policy, Critical: &t.Critical, High: &t.High, Normal: &t.Normal, Low: &t.Low})
	if err != nil { // a struct of ints and a string always marshals
		panic(err)
	}
	return string(b)
}

// ParseNodeMapping reads an infera.io/priority-mapping value strictly:
// unknown fields, a missing threshold, another version and thresholds that
// are not strictly decreasing below the system range are errors that name
// the annotation and the field.
func ParseNodeMapping(value string) (NodeMapping, error) {
	fail := func(format string, args ...any) (NodeMapping, error) {
		return NodeMapping{}, fmt.Errorf(wellknown.PriorityMappingAnnotation+": "+format, args...)
	}
	if len(value) > maxNodeMappingBytes {
		return fail("value is %d bytes, more than %d", len(value), maxNodeMappingBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(value)))
	dec.DisallowUnknownFields()
	var w nodeMappingJSON
	if err := dec.Decode(&w); err != nil {
		return fail("not a mapping document: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail("trailing data after the document")
	}
	switch {
	case w.V == nil:
		return fail("v: missing")
	case *w.V != NodeMappingVersion:
		return fail("v: unsupported version %d, want %d", *w.V, NodeMappingVersion)
	}
	for _, f := range []struct {
		name string
		v    *int32
	}{{"critical", w.Critical}, {"high", w.High}, {"normal", w.Normal}, {"low", w.Low}} {
		if f.v == nil {
			return fail("%s: missing", f.name)
		}
	}
	m := NodeMapping{Policy: w.Policy, Thresholds: Thresholds{Critical: *w.Critical, High: *w.High, Normal: *w.Normal, Low: *w.Low}}
	if err := m.Thresholds.ValidateField(wellknown.PriorityMappingAnnotation + ": "); err != nil {
		return NodeMapping{}, err
	}
	return m, nil
}

// ForNode returns the thresholds for pods on a node with these annotations:
// the node's infera.io/priority-mapping when it is present and valid, else
// fallback (the reader's configured thresholds). err says why a present
// value was not used; the thresholds returned are then fallback.
func ForNode(annotations map[string]string, fallback Thresholds) (Thresholds, error) {
	v, ok := annotations[wellknown.PriorityMappingAnnotation]
	if !ok {
		return fallback, nil
	}
	m, err := ParseNodeMapping(v)
	if err != nil {
		return fallback, err
	}
	return m.Thresholds, nil
}
