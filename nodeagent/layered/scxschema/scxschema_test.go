package scxschema

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infera-io/temper/nodeagent/layered/internal/sharedtest"
)

func newValidator(t *testing.T) *Validator {
	t.Helper()
	v, err := New()
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	return v
}

// TestEmbeddedSchemaIsTheSharedOne: the embedded copy must not drift from
// the schema the project tracks upstream with. It runs only where the shared folder
// is beside the clone and skips, saying so, elsewhere.
func TestEmbeddedSchemaIsTheSharedOne(t *testing.T) {
	shared, err := os.ReadFile(sharedtest.Path(t, "scx-layered", "layer-config.strict.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shared, strictSchema) {
		t.Errorf("nodeagent/layered/scxschema/layer-config.strict.schema.json differs from the shared folder's scx-layered/layer-config.strict.schema.json; copy it again")
	}
	if !bytes.Equal(StrictSchema(), strictSchema) {
		t.Error("StrictSchema() does not return the embedded schema")
	}
	if _, err := NewWithSchema(shared); err != nil {
		t.Errorf("NewWithSchema(shared) = %v", err)
	}
}

// TestCases runs the repository's own fixtures (testdata/cases.json):
// every case marked accept must pass the embedded strict schema and the code
// checks, every case marked reject must fail them.
func TestCases(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Cases []struct {
			Name   string          `json:"name"`
			Want   string          `json:"want"`
			Why    string          `json:"why"`
			Config json.RawMessage `json:"config"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatalf("testdata/cases.json: %v", err)
	}
	counts := map[string]int{}
	v := newValidator(t)
	for _, c := range file.Cases {
		counts[c.Want]++
		t.Run(c.Name, func(t *testing.T) {
			err := v.Validate(c.Config)
			switch c.Want {
			case "accept":
				if err != nil {
					t.Errorf("rejected a config that should pass (%s): %v", c.Why, err)
				}
			case "reject":
				if err == nil {
					t.Errorf("accepted a config that breaks a rule: %s", c.Why)
				}
			default:
				t.Fatalf("want is %q; use accept or reject", c.Want)
			}
		})
	}
	if counts["accept"] == 0 || counts["reject"] == 0 {
		t.Fatalf("testdata/cases.json needs both kinds of case, has %v", counts)
	}
}

// TestSharedCases runs the steering repository's fixtures when the shared folder is
// beside the clone (it skips otherwise): valid ones must pass, every
// invalid one (including those only the strict schema rejects) must fail.
// The cases' README names each file, so a fixture added without a note (or
// a note without a file) fails here too.
func TestSharedCases(t *testing.T) {
	v := newValidator(t)
	casesDir := sharedtest.Path(t, "scx-layered", "cases")
	readme, err := os.ReadFile(filepath.Join(casesDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"valid", "invalid", "invalid-strict"} {
		files, err := filepath.Glob(filepath.Join(casesDir, dir, "*.json"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no cases in %s: %v", dir, err)
		}
		for _, f := range files {
			name := dir + "/" + filepath.Base(f)
			t.Run(name, func(t *testing.T) {
				if !bytes.Contains(readme, []byte("`"+name+"`")) {
					t.Errorf("cases/README.md does not describe %s", name)
				}
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				err = v.Validate(b)
				switch {
				case dir == "valid" && err != nil:
					t.Errorf("a valid case was rejected: %v", err)
				case dir != "valid" && err == nil:
					t.Errorf("an invalid case was accepted")
				}
			})
		}
	}
}

// TestUpstreamExamples (only where the shared folder is present): every upstream example passes, except the two that
// put util_range into an Open layer, which only the strict schema rejects
// (scx-layered/README.md).
func TestUpstreamExamples(t *testing.T) {
	v := newValidator(t)
	dir := sharedtest.Path(t, "scx-layered", "examples")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	more, _ := filepath.Glob(filepath.Join(dir, "integration", "*.json"))
	files = append(files, more...)
	if len(files) != 16 {
		t.Fatalf("found %d upstream examples, want the 16 the README lists", len(files))
	}
	strictOnly := map[string]bool{"cpuset.json": true, "same_over_idle.json": true}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			err = v.Validate(b)
			if strictOnly[filepath.Base(f)] {
				if err == nil || !strings.Contains(err.Error(), "util_range") {
					t.Errorf("want a strict-schema error about util_range in an Open layer, got %v", err)
				}
				return
			}
			if err != nil {
				t.Errorf("upstream example rejected: %v", err)
			}
		})
	}
}

// TestCodeChecks covers what the schema cannot express: every input here is
// schema-valid and must still be rejected, with the location named.
func TestCodeChecks(t *testing.T) {
	const catchAll = `{"name":"rest","matches":[[]],"kind":{"Open":{}}}`
	layer := func(name, matches, kind string) string {
		return `{"name":"` + name + `","matches":` + matches + `,"kind":` + kind + `}`
	}
	doc := func(layers ...string) string { return "[" + strings.Join(append(layers, catchAll), ",") + "]" }
	grouped := func(body string) string { return layer("g", `[[{"CgroupPrefix":"a/"}]]`, `{"Grouped":{`+body+`}}`) }
	regexes := make([]string, 17)
	for i := range regexes {
		regexes[i] = `[{"CgroupRegex":"^/sys/fs/cgroup/a` + strings.Repeat("b", i) + `$"}]`
	}
	tests := map[string]struct {
		config  string
		topo    Topology
		wantErr string
	}{
		"util_range reversed": {
			config:  doc(grouped(`"util_range":[0.9,0.5]`)),
			wantErr: `layer[0] "g".kind.Grouped.util_range: low 0.9 must be below high 0.5`,
		},
		"util_range empty band": {
			config:  doc(grouped(`"util_range":[0.5,0.5]`)),
			wantErr: `layer[0] "g".kind.Grouped.util_range: low 0.5 must be below high 0.5`,
		},
		"cpus_range min above max": {
			config:  doc(grouped(`"util_range":[0.5,0.8],"cpus_range":[4,2]`)),
			wantErr: `layer[0] "g".kind.Grouped.cpus_range: min 4 must not exceed max 2`,
		},
		"cpus_range_frac min above max": {
			config:  doc(grouped(`"util_range":[0.5,0.8],"cpus_range_frac":[0.6,0.2]`)),
			wantErr: `layer[0] "g".kind.Grouped.cpus_range_frac: min 0.6 must not exceed max 0.2`,
		},
		"integer written with a fraction": {
			config:  doc(grouped(`"util_range":[0.5,0.8],"slice_us":20000.0`)),
			wantErr: `layer[0] "g".kind.Grouped.slice_us: 20000.0 is written as a float; scx_layered wants a JSON integer`,
		},
		"integer written with an exponent": {
			config:  doc(grouped(`"util_range":[0.5,0.8],"cpus_range":[1,2e1]`)),
			wantErr: `layer[0] "g".kind.Grouped.cpus_range[1]: 2e1 is written as a float; scx_layered wants a JSON integer`,
		},
		"integer match payload as a float": {
			config:  doc(layer("n", `[[{"NiceAbove":1.0}]]`, `{"Open":{}}`)),
			wantErr: `layer[0] "n".matches[0][0].NiceAbove: 1.0 is written as a float; scx_layered wants a JSON integer`,
		},
		"duplicate key": {
			config:  `[{"name":"rest","name":"again","matches":[[]],"kind":{"Open":{}}}]`,
			wantErr: `$[0]: duplicate key "name" (serde rejects it)`,
		},
		"data after the document": {
			config:  doc() + ` []`,
			wantErr: "data after the JSON document",
		},
		"duplicate layer names": {
			config:  doc(layer("rest", `[[{"CgroupPrefix":"a/"}]]`, `{"Open":{}}`)),
			wantErr: `layer[1] "rest": name is also used by layer[0]; stats are keyed by name`,
		},
		"name over 127 bytes in fewer characters": {
			config:  doc(layer(strings.Repeat("é", 64), `[[{"CgroupPrefix":"a/"}]]`, `{"Open":{}}`)),
			wantErr: "name is 128 bytes, more than 127",
		},
		"comm prefix over 15 bytes in fewer characters": {
			config:  doc(layer("c", `[[{"PcommPrefix":"`+strings.Repeat("é", 8)+`"}]]`, `{"Open":{}}`)),
			wantErr: `layer[0] "c".matches[0][0].PcommPrefix: 16 bytes, more than 15 (copying it into the comm buffer panics)`,
		},
		"cgroup prefix over 4095 bytes": {
			config:  doc(layer("c", `[[{"CgroupPrefix":"`+strings.Repeat("é", 2048)+`"}]]`, `{"Open":{}}`)),
			wantErr: `layer[0] "c".matches[0][0].CgroupPrefix: 4096 bytes, more than 4095`,
		},
		"seventeen CgroupRegex": {
			config:  doc(layer("r1", "["+strings.Join(regexes[:9], ",")+"]", `{"Open":{}}`), layer("r2", "["+strings.Join(regexes[9:], ",")+"]", `{"Open":{}}`)),
			wantErr: "17 CgroupRegex matches; scx_layered allows at most 16",
		},
		"invalid regex": {
			config:  doc(layer("r", `[[{"CgroupRegex":"(unclosed"}]]`, `{"Open":{}}`)),
			wantErr: `layer[0] "r".matches[0][0].CgroupRegex: invalid regex`,
		},
		"one hint in two layers": {
			config:  doc(layer("h1", `[[{"HintEquals":7}]]`, `{"Open":{}}`), layer("h2", `[[{"HintEquals":7}]]`, `{"Open":{}}`)),
			wantErr: `layer[1] "h2".matches[0][0].HintEquals: hint 7 already maps to layer[0]; a hint value may map to one layer only`,
		},
		"NUMA node beyond the host": {
			config:  doc(layer("n", `[[{"NumaNode":1}]]`, `{"Open":{}}`)),
			topo:    Topology{NUMANodes: 1},
			wantErr: `layer[0] "n".matches[0][0].NumaNode: NUMA node 1 does not exist (the host has 1)`,
		},
		"LLC id beyond the host": {
			config:  doc(grouped(`"util_range":[0.5,0.8],"llcs":[0,2]`)),
			topo:    Topology{LLCs: 2},
			wantErr: `layer[0] "g".kind.Grouped.llcs[1]: LLC 2 does not exist (the host has 2)`,
		},
	}
	v := newValidator(t)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := v.ValidateFor([]byte(tc.config), tc.topo)
			if err == nil {
				t.Fatalf("ValidateFor() accepted %s", tc.config)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "schema:") {
				t.Errorf("the schema rejected it; this case is meant to test a code check: %v", err)
			}
		})
	}
}

func TestCodeChecksAccept(t *testing.T) {
	v := newValidator(t)
	tests := map[string]struct {
		config string
		topo   Topology
	}{
		"ids inside the topology": {
			config: `[{"name":"g","matches":[[{"NumaNode":0}]],"kind":{"Grouped":{"util_range":[0.5,0.8],"llcs":[0,1],"nodes":[0]}}},{"name":"rest","matches":[[]],"kind":{"Open":{}}}]`,
			topo:   Topology{NUMANodes: 1, LLCs: 2},
		},
		"ids unchecked without a topology": {
			config: `[{"name":"g","matches":[[{"NumaNode":5}]],"kind":{"Grouped":{"util_range":[0.5,0.8],"llcs":[7]}}},{"name":"rest","matches":[[]],"kind":{"Open":{}}}]`,
		},
		"equal cpus_range bounds": {
			config: `[{"name":"c","matches":[[{"CgroupPrefix":"a/"}]],"kind":{"Confined":{"util_range":[0,0.1],"cpus_range":[4,4]}}},{"name":"rest","matches":[[]],"kind":{"Open":{}}}]`,
		},
		"one hint twice in one layer": {
			config: `[{"name":"h","matches":[[{"HintEquals":3}],[{"HintEquals":3}]],"kind":{"Open":{}}},{"name":"rest","matches":[[]],"kind":{"Open":{}}}]`,
		},
		"sixteen CgroupRegex": {
			config: `[{"name":"r","matches":[` + strings.TrimSuffix(strings.Repeat(`[{"CgroupRegex":"^/sys/fs/cgroup/x$"}],`, 16), ",") + `],"kind":{"Open":{}}},{"name":"rest","matches":[[]],"kind":{"Open":{}}}]`,
		},
		"whitespace around the document": {
			config: "\n [{\"name\":\"rest\",\"matches\":[[]],\"kind\":{\"Open\":{}}}] \n",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := v.ValidateFor([]byte(tc.config), tc.topo); err != nil {
				t.Errorf("ValidateFor() = %v", err)
			}
		})
	}
}

func TestValidateConvenience(t *testing.T) {
	if err := Validate([]byte(`[{"name":"rest","matches":[[]],"kind":{"Open":{}}}]`)); err != nil {
		t.Errorf("Validate(minimal) = %v", err)
	}
	if err := Validate([]byte(`{"layers":[]}`)); err == nil {
		t.Error("Validate(object) succeeded")
	}
	if err := Validate(nil); err == nil {
		t.Error("Validate(nil) succeeded")
	}
}
