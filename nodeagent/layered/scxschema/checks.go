package scxschema

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
)

// Limits the schema cannot state exactly (FORMAT.md §3, §4, §9, §15).
const (
	// maxNameBytes: the BPF copy of a name needs room for a NUL in 128 bytes.
	maxNameBytes = 127
	// maxCommBytes: comm strings go into a 16-byte TASK_COMM_LEN buffer.
	maxCommBytes = 15
	// maxCgroupBytes: cgroup strings go into a 4096-byte buffer.
	maxCgroupBytes = 4095
	// maxCgroupRegex: scx_layered refuses more CgroupRegex rules at init.
	maxCgroupRegex = 16
)

// intFields are the LayerCommon and kind-body fields whose Rust type is an
// integer (u32, u64, usize), scalars or arrays of them.
var intFields = []string{
	"min_exec_us", "slice_us", "weight", "disallow_open_after_us", "disallow_preempt_after_us",
	"util_peak_half_life_ms", "perf", "idle_resume_us", "member_expire_ms", "nodes", "llcs", "cpus_range",
}

// intMatches are the LayerMatch variants with integer payloads.
var intMatches = []string{
	"NiceAbove", "NiceBelow", "NiceEquals", "UIDEquals", "GIDEquals", "PIDEquals", "PPIDEquals",
	"TGIDEquals", "NSPIDEquals", "NSEquals", "AvgRuntime", "HintEquals", "NumaNode",
}

// codeChecks runs the checks of FORMAT.md §15 rule 6 on a document that
// already passed the schema, so its shape is known.
func codeChecks(doc any, topo Topology) error {
	layers, _ := doc.([]any)
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	names := map[string]int{}
	hints := map[string]int{} // HintEquals value → layer index
	regexes := 0
	for i, l := range layers {
		layer, _ := l.(map[string]any)
		at := layerName(i, layer)

		name, _ := layer["name"].(string)
		if len(name) > maxNameBytes {
			fail("%s: name is %d bytes, more than %d", at, len(name), maxNameBytes)
		}
		if j, dup := names[name]; dup {
			fail("%s: name is also used by layer[%d]; stats are keyed by name", at, j)
		} else {
			names[name] = i
		}

		if tmpl, ok := layer["template"].(map[string]any); ok {
			for k, v := range tmpl {
				s, _ := v.(string)
				checkCgroupString(fail, at+".template."+k, s)
				if k == "CgroupRegex" {
					checkRegex(fail, at+".template.CgroupRegex", s)
				}
			}
		}

		matches, _ := layer["matches"].([]any)
		for o, block := range matches {
			conds, _ := block.([]any)
			for a, c := range conds {
				cond, _ := c.(map[string]any)
				for k, v := range cond {
					where := fmt.Sprintf("%s.matches[%d][%d].%s", at, o, a, k)
					switch k {
					case "CgroupPrefix", "CgroupSuffix", "CgroupContains":
						s, _ := v.(string)
						checkCgroupString(fail, where, s)
					case "CgroupRegex":
						regexes++
						s, _ := v.(string)
						checkRegex(fail, where, s)
					case "CommPrefix", "CommPrefixExclude", "PcommPrefix", "PcommPrefixExclude", "CmdJoin":
						if s, _ := v.(string); len(s) > maxCommBytes {
							fail("%s: %d bytes, more than %d (copying it into the comm buffer panics)", where, len(s), maxCommBytes)
						}
					case "HintEquals":
						h := fmt.Sprint(v)
						if j, seen := hints[h]; seen && j != i {
							fail("%s: hint %s already maps to layer[%d]; a hint value may map to one layer only", where, h, j)
						} else {
							hints[h] = i
						}
					case "NumaNode":
						checkID(fail, where, v, topo.NUMANodes, "NUMA node")
					}
					if slices.Contains(intMatches, k) {
						checkInts(fail, where, v)
					}
				}
			}
		}

		kind, _ := layer["kind"].(map[string]any)
		for kindName, b := range kind {
			body, _ := b.(map[string]any)
			where := at + ".kind." + kindName
			for _, f := range intFields {
				if v, ok := body[f]; ok {
					checkInts(fail, where+"."+f, v)
				}
			}
			checkOrdered(fail, where+".util_range", body["util_range"], true)
			checkOrdered(fail, where+".cpus_range", body["cpus_range"], false)
			checkOrdered(fail, where+".cpus_range_frac", body["cpus_range_frac"], false)
			checkIDList(fail, where+".nodes", body["nodes"], topo.NUMANodes, "NUMA node")
			checkIDList(fail, where+".llcs", body["llcs"], topo.LLCs, "LLC")
		}
	}
	if regexes > maxCgroupRegex {
		fail("%d CgroupRegex matches; scx_layered allows at most %d", regexes, maxCgroupRegex)
	}
	return errors.Join(errs...)
}

type failFunc func(format string, args ...any)

func checkCgroupString(fail failFunc, where, s string) {
	if len(s) > maxCgroupBytes {
		fail("%s: %d bytes, more than %d", where, len(s), maxCgroupBytes)
	}
}

// checkRegex compiles a CgroupRegex with Go's RE2 engine. scx_layered uses
// Rust's regex crate, whose syntax is close (neither has backreferences or
// lookaround) but not identical, so this catches most, not all, of what
// scx_layered refuses at init.
func checkRegex(fail failFunc, where, s string) {
	if _, err := regexp.Compile(s); err != nil {
		fail("%s: invalid regex: %v", where, err)
	}
}

// checkInts reports numbers spelled as floats anywhere in v.
func checkInts(fail failFunc, where string, v any) {
	switch t := v.(type) {
	case json.Number:
		if !isIntLiteral(t) {
			fail("%s: %s is written as a float; scx_layered wants a JSON integer", where, t)
		}
	case []any:
		for i, e := range t {
			checkInts(fail, fmt.Sprintf("%s[%d]", where, i), e)
		}
	}
}

// checkOrdered checks a [low, high] pair: strictly increasing for
// util_range, non-decreasing for the cpus ranges. null is fine.
func checkOrdered(fail failFunc, where string, v any, strict bool) {
	pair, ok := v.([]any)
	if !ok || len(pair) != 2 {
		return
	}
	lo, errLo := number(pair[0])
	hi, errHi := number(pair[1])
	if errLo != nil || errHi != nil {
		return // the schema has checked the type
	}
	switch {
	case strict && lo >= hi:
		fail("%s: low %v must be below high %v", where, pair[0], pair[1])
	case !strict && lo > hi:
		fail("%s: min %v must not exceed max %v", where, pair[0], pair[1])
	}
}

func number(v any) (float64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	return n.Float64()
}

// checkIDList checks a list of NUMA node or LLC ids: no repeats, and each
// below count when the topology is known.
func checkIDList(fail failFunc, where string, v any, count int, what string) {
	ids, _ := v.([]any)
	seen := map[string]bool{}
	for i, id := range ids {
		key := fmt.Sprint(id)
		if seen[key] {
			fail("%s[%d]: %s %s is listed twice", where, i, what, key)
		}
		seen[key] = true
		checkID(fail, fmt.Sprintf("%s[%d]", where, i), id, count, what)
	}
}

func checkID(fail failFunc, where string, v any, count int, what string) {
	if count <= 0 {
		return
	}
	n, ok := v.(json.Number)
	if !ok {
		return
	}
	if id, err := n.Int64(); err != nil || id >= int64(count) {
		fail("%s: %s %s does not exist (the host has %d)", where, what, n, count)
	}
}
