package tiersched

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
)

// Kernel is what the loader needs to know about the running kernel's
// sched_ext, read from its BTF: the exact names of the scx_bpf_* kfuncs it
// has and the values of the SCX_* enums.
type Kernel struct {
	Kfuncs map[string]bool
	Enums  map[string]uint64
	// Shapes are the kfuncs' parameter kinds (kfuncShape); nil when not
	// read from BTF (then every name in Kfuncs is taken as compatible).
	Shapes map[string]string
}

// ReadKernel reads the facts from spec (btf.LoadKernelSpec on a live node).
//
// It walks every type instead of asking spec.TypeByName/AnyTypesByName:
// in cilium/ebpf v0.22 those look names up by their "essential" name (the
// part before a "___" flavour suffix) and then drop the non-exact matches
// with a loop that skips the element after each deletion. On 6.19+ kernels,
// where scx_bpf_dsq_insert, scx_bpf_dsq_insert___v2 and
// scx_bpf_dsq_insert___v2_impl all exist, a lookup of scx_bpf_dsq_insert
// then fails with "multiple matching types", and a lookup of a name the
// kernel lacks can return another flavour.
func ReadKernel(spec *btf.Spec) (Kernel, error) {
	k := Kernel{Kfuncs: map[string]bool{}, Enums: map[string]uint64{}, Shapes: map[string]string{}}
	for typ, err := range spec.All() {
		if err != nil {
			return k, err
		}
		switch t := typ.(type) {
		case *btf.Func:
			if strings.HasPrefix(t.Name, "scx_bpf_") {
				k.Kfuncs[t.Name] = true
				k.Shapes[t.Name] = kfuncShape(t)
			}
		case *btf.Enum:
			for _, v := range t.Values {
				if strings.HasPrefix(v.Name, "SCX_") {
					k.Enums[v.Name] = v.Value
				}
			}
		}
	}
	if len(k.Kfuncs) == 0 {
		return k, errors.New("the kernel's BTF has no sched_ext kfuncs")
	}
	return k, nil
}

// kfuncFamilies are the kfuncs whose name changed across kernel versions,
// newest first. The object declares every name weak; the loader keeps the
// first one the kernel has and strips the others.
var kfuncFamilies = [][]string{
	{"scx_bpf_dsq_insert___v2", "scx_bpf_dsq_insert", "scx_bpf_dispatch"},
	{"scx_bpf_dsq_move_to_local___v2", "scx_bpf_dsq_move_to_local", "scx_bpf_consume"},
}

// kfuncShapes are the parameter kinds of the object's declarations of the
// renamed kfuncs (bpf/tiersched.bpf.c; TestKfuncShapesMatchTheObject keeps
// them in sync). A kernel whose function of the same name has another
// shape does not count as having it: Debian's 7.1.13 has a
// scx_bpf_dsq_move_to_local___v2 that is not the (dsq_id, enq_flags) of
// 7.2, and loading against it fails ("function param mismatch").
var kfuncShapes = map[string]string{
	"scx_bpf_dsq_insert___v2":        "pSSS",
	"scx_bpf_dsq_insert":             "pSSS",
	"scx_bpf_dispatch":               "pSSS",
	"scx_bpf_dsq_move_to_local___v2": "SS",
	"scx_bpf_dsq_move_to_local":      "S",
	"scx_bpf_consume":                "S",
}

// kfuncShape is a function's parameter kinds: p for a pointer, S for a
// scalar (integer or enum), ? for anything else.
func kfuncShape(f *btf.Func) string {
	proto, ok := f.Type.(*btf.FuncProto)
	if !ok {
		return "?"
	}
	var b strings.Builder
	for _, p := range proto.Params {
		switch btf.UnderlyingType(p.Type).(type) {
		case *btf.Pointer:
			b.WriteByte('p')
		case *btf.Int, *btf.Enum:
			b.WriteByte('S')
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}

// has reports whether the kernel has kfunc name with the shape the object
// declares.
func (k Kernel) has(name string) bool {
	if !k.Kfuncs[name] {
		return false
	}
	if k.Shapes == nil {
		return true
	}
	want, ok := kfuncShapes[name]
	return !ok || k.Shapes[name] == want
}

// Choice is the kfunc of each family the object will call on this kernel.
type Choice struct {
	Insert, MoveToLocal string
}

// chooseKfuncs picks one name per family and lists the names to strip.
func chooseKfuncs(k Kernel) (Choice, map[string]bool, error) {
	strip := map[string]bool{}
	var chosen [2]string
	for i, fam := range kfuncFamilies {
		for _, name := range fam {
			if chosen[i] == "" && k.has(name) {
				chosen[i] = name
				continue
			}
			strip[name] = true
		}
		if chosen[i] == "" {
			return Choice{}, nil, fmt.Errorf("the kernel has none of the kfuncs %s", strings.Join(fam, ", "))
		}
	}
	return Choice{Insert: chosen[0], MoveToLocal: chosen[1]}, strip, nil
}

// stripKfuncs does for the names in strip what cilium/ebpf does for a weak
// kfunc the kernel lacks: a call becomes a call to a helper that does not
// exist and an address load (the existence check) becomes 0, so the
// verifier sees the branch as dead. It has to be done here because
// cilium/ebpf resolves each weak name itself, and does not strip "___"
// suffixes as libbpf does (cilium/ebpf#2057), so a name the kernel has
// under several flavours fails the load instead of being skipped.
func stripKfuncs(spec *ebpf.CollectionSpec, strip map[string]bool) int {
	n := 0
	for _, p := range spec.Programs {
		for i, ins := range p.Instructions {
			ref := ins.Reference()
			if ref == "" || !strip[ref] {
				continue
			}
			var repl asm.Instruction
			switch {
			case ins.IsKfuncCall():
				repl = asm.BuiltinFunc(0xdedc0de).Call()
			case ins.OpCode.IsDWordLoad():
				repl = asm.LoadImm(ins.Dst, 0, asm.DWord)
			default:
				continue
			}
			if s := ins.Symbol(); s != "" {
				repl = repl.WithSymbol(s)
			}
			p.Instructions[i] = repl
			n++
		}
	}
	return n
}

// enumVars are the object's SCX_* constants and the kernel enum each is
// filled from.
var enumVars = map[string]string{
	"scx_dsq_local":    "SCX_DSQ_LOCAL",
	"scx_dsq_local_on": "SCX_DSQ_LOCAL_ON",
	"scx_enq_preempt":  "SCX_ENQ_PREEMPT",
	"scx_kick_idle":    "SCX_KICK_IDLE",
	"scx_kick_preempt": "SCX_KICK_PREEMPT",
}

func fillEnums(spec *ebpf.CollectionSpec, k Kernel) error {
	for v, enum := range enumVars {
		val, ok := k.Enums[enum]
		if !ok {
			return fmt.Errorf("the kernel's BTF has no %s", enum)
		}
		vs, ok := spec.Variables[v]
		if !ok {
			return fmt.Errorf("the object has no variable %s", v)
		}
		if err := vs.Set(val); err != nil {
			return fmt.Errorf("failed to set %s: %w", v, err)
		}
	}
	return nil
}
