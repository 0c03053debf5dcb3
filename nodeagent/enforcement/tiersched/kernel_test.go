package tiersched

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/btf"
)

func kernelWith(names ...string) Kernel {
	k := Kernel{Kfuncs: map[string]bool{}, Enums: map[string]uint64{}}
	for _, n := range names {
		k.Kfuncs[n] = true
	}
	for _, e := range enumVars {
		k.Enums[e] = 1
	}
	return k
}

// One object, three kernel generations: the loader keeps one kfunc per
// renamed family and leaves no call or existence check of the others.
func TestKfuncChoicePerKernel(t *testing.T) {
	tests := map[string]struct {
		k    Kernel
		want Choice
	}{
		"6.12": {kernelWith("scx_bpf_dispatch", "scx_bpf_consume"), Choice{"scx_bpf_dispatch", "scx_bpf_consume"}},
		"6.13": {kernelWith("scx_bpf_dsq_insert", "scx_bpf_dsq_move_to_local"), Choice{"scx_bpf_dsq_insert", "scx_bpf_dsq_move_to_local"}},
		"7.2": {kernelWith("scx_bpf_dsq_insert", "scx_bpf_dsq_insert___v2", "scx_bpf_dsq_insert___v2_impl",
			"scx_bpf_dsq_move_to_local", "scx_bpf_dsq_move_to_local___v2"), Choice{"scx_bpf_dsq_insert___v2", "scx_bpf_dsq_move_to_local___v2"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, strip, err := chooseKfuncs(tc.k)
			if err != nil || got != tc.want {
				t.Fatalf("chooseKfuncs = %+v, %v; want %+v", got, err, tc.want)
			}
			spec, err := loadTiersched()
			if err != nil {
				t.Fatal(err)
			}
			if n := stripKfuncs(spec, strip); n == 0 {
				t.Fatal("stripKfuncs rewrote nothing")
			}
			kept := map[string]int{}
			for _, p := range spec.Programs {
				for _, ins := range p.Instructions {
					ref := ins.Reference()
					if strip[ref] {
						t.Errorf("program %s still references %s: %v", p.Name, ref, ins)
					}
					if ref == got.Insert || ref == got.MoveToLocal {
						kept[ref]++
					}
				}
			}
			if kept[got.Insert] == 0 || kept[got.MoveToLocal] == 0 {
				t.Errorf("the kept kfuncs are not referenced any more: %v", kept)
			}
			if err := fillEnums(spec, tc.k); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestKfuncChoiceNamesWhatIsMissing(t *testing.T) {
	_, _, err := chooseKfuncs(kernelWith("scx_bpf_dsq_insert"))
	if err == nil || !strings.Contains(err.Error(), "scx_bpf_consume") {
		t.Fatalf("chooseKfuncs without a move kfunc = %v, want an error naming the family", err)
	}
	k := kernelWith("scx_bpf_dispatch", "scx_bpf_consume")
	delete(k.Enums, "SCX_ENQ_PREEMPT")
	spec, err := loadTiersched()
	if err != nil {
		t.Fatal(err)
	}
	if err := fillEnums(spec, k); err == nil || !strings.Contains(err.Error(), "SCX_ENQ_PREEMPT") {
		t.Fatalf("fillEnums without SCX_ENQ_PREEMPT = %v, want an error naming it", err)
	}
}

// The shapes the chooser requires are the object's own declarations.
func TestKfuncShapesMatchTheObject(t *testing.T) {
	spec, err := loadTiersched()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for typ, err := range spec.Types.All() {
		if err != nil {
			t.Fatal(err)
		}
		f, ok := typ.(*btf.Func)
		if !ok {
			continue
		}
		want, ok := kfuncShapes[f.Name]
		if !ok {
			continue
		}
		seen[f.Name] = true
		if got := kfuncShape(f); got != want {
			t.Errorf("the object declares %s with shape %q, kfuncShapes says %q", f.Name, got, want)
		}
	}
	for name := range kfuncShapes {
		if !seen[name] {
			t.Errorf("the object does not declare %s", name)
		}
	}
}

// A kernel whose ___v2 has other parameters (as on Debian's 7.1.13; the
// shape here is made up) gets the
// plain name of that family.
func TestKfuncChoiceSkipsAnotherShape(t *testing.T) {
	k := kernelWith("scx_bpf_dsq_insert", "scx_bpf_dsq_insert___v2", "scx_bpf_dsq_move_to_local", "scx_bpf_dsq_move_to_local___v2")
	k.Shapes = map[string]string{
		"scx_bpf_dsq_insert": "pSSS", "scx_bpf_dsq_insert___v2": "pSSS",
		"scx_bpf_dsq_move_to_local": "S", "scx_bpf_dsq_move_to_local___v2": "Sp",
	}
	got, strip, err := chooseKfuncs(k)
	want := Choice{"scx_bpf_dsq_insert___v2", "scx_bpf_dsq_move_to_local"}
	if err != nil || got != want {
		t.Fatalf("chooseKfuncs = %+v, %v; want %+v", got, err, want)
	}
	if !strip["scx_bpf_dsq_move_to_local___v2"] {
		t.Error("the ___v2 of another shape is not stripped")
	}
}
