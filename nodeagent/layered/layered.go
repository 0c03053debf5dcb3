package layered

// The JSON shape of scx_layered's config (FORMAT.md §2–§7): a bare array
// of layers. Only the fields the generator sets are modelled; integer fields
// use Go integer types so they are never written as 1.0 (serde refuses
// that), and each externally tagged enum is a struct whose one non-empty
// field becomes the single key.

type layerSpec struct {
	Name    string    `json:"name"`
	Comment string    `json:"comment,omitempty"`
	Matches [][]match `json:"matches"`
	Kind    layerKind `json:"kind"`
}

// match is one LayerMatch; exactly one field is set.
type match struct {
	CgroupPrefix string `json:"CgroupPrefix,omitempty"`
	PcommPrefix  string `json:"PcommPrefix,omitempty"`
}

// layerKind is LayerKind; exactly one field is set.
type layerKind struct {
	Confined *kindBody `json:"Confined,omitempty"`
	Grouped  *kindBody `json:"Grouped,omitempty"`
	Open     *kindBody `json:"Open,omitempty"`
}

// kindBody holds the kind-specific and LayerCommon fields we use.
type kindBody struct {
	UtilRange *[2]float64 `json:"util_range,omitempty"`
	CPUsRange *[2]int     `json:"cpus_range,omitempty"`
	Protected bool        `json:"protected,omitempty"`
	Preempt   bool        `json:"preempt,omitempty"`
	Exclusive bool        `json:"exclusive,omitempty"`
	SliceUS   uint64      `json:"slice_us,omitempty"`
	Weight    uint32      `json:"weight,omitempty"`
}

// as wraps the body in a kind, dropping what that kind does not have:
// Open layers own no CPUs, so util_range, cpus_range and protected would be
// ignored upstream and are refused by the strict schema.
func (b kindBody) as(k LayerKind) layerKind {
	switch k {
	case KindConfined:
		return layerKind{Confined: &b}
	case KindGrouped:
		return layerKind{Grouped: &b}
	default:
		b.UtilRange, b.CPUsRange, b.Protected, b.Weight = nil, nil, false, 0
		return layerKind{Open: &b}
	}
}
