package scxschema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// strictSchema is a byte-for-byte copy of
// ../shared/scx-layered/layer-config.strict.schema.json (a test keeps them
// equal). It describes scx_layered 1.1.2 (upstream commit 7a58a3a1a).
//
//go:embed layer-config.strict.schema.json
var strictSchema []byte

// schemaURL is where the schema is registered with the compiler: its $id.
const schemaURL = "urn:scx-layered:layer-config:strict:v1.1.2"

// StrictSchema returns a copy of the embedded strict schema.
func StrictSchema() []byte { return bytes.Clone(strictSchema) }

// Topology is what the host has, for the checks that need it. A zero count
// means unknown, and the ids are then not checked.
type Topology struct {
	// NUMANodes is the number of NUMA nodes (ids 0..NUMANodes-1).
	NUMANodes int
	// LLCs is the number of last-level caches (ids 0..LLCs-1).
	LLCs int
}

// Validator holds the compiled schema; build it once with New and reuse it.
// It is safe for concurrent use.
type Validator struct {
	schema *jsonschema.Schema
}

// New compiles the embedded strict schema.
func New() (*Validator, error) { return NewWithSchema(strictSchema) }

// NewWithSchema compiles another copy of the schema (tests use the one in
// ../shared to prove the embedded copy is not stale). The code checks are
// the same.
func NewWithSchema(schema []byte) (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("failed to decode the schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("failed to add the schema: %w", err)
	}
	s, err := c.Compile(schemaURL)
	if err != nil {
		return nil, fmt.Errorf("failed to compile the schema: %w", err)
	}
	return &Validator{schema: s}, nil
}

// Validate checks one config document with an unknown topology. It
// compiles the schema on every call; callers that validate often should
// keep a Validator.
func Validate(config []byte) error {
	v, err := New()
	if err != nil {
		return err
	}
	return v.Validate(config)
}

// Validate checks config against the strict schema and the code checks,
// with an unknown topology.
func (v *Validator) Validate(config []byte) error {
	return v.ValidateFor(config, Topology{})
}

// ValidateFor checks config against the strict schema and the code checks,
// including the ids of NUMA nodes and LLCs where topo knows them. The error
// lists every problem found, each with its location.
func (v *Validator) ValidateFor(config []byte, topo Topology) error {
	doc, err := decodeStrict(config)
	if err != nil {
		return fmt.Errorf("invalid scx_layered config: %w", err)
	}
	if err := v.schema.Validate(doc); err != nil {
		return fmt.Errorf("invalid scx_layered config: schema: %w", err)
	}
	if err := codeChecks(doc, topo); err != nil {
		return fmt.Errorf("invalid scx_layered config: %w", err)
	}
	return nil
}

// decodeStrict decodes one JSON document into the generic form the schema
// validator takes (numbers as json.Number, keeping their spelling), and
// rejects what serde would but encoding/json accepts: duplicate keys and
// data after the document.
func decodeStrict(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec, "$", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON document")
	}
	return v, nil
}

// maxDepth bounds nesting; a real config is five levels deep.
const maxDepth = 64

func decodeValue(dec *json.Decoder, at string, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: nested more than %d levels", at, maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", at, err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := map[string]any{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("%s: invalid JSON: %w", at, err)
				}
				key := kt.(string)
				if _, dup := obj[key]; dup {
					return nil, fmt.Errorf("%s: duplicate key %q (serde rejects it)", at, key)
				}
				child, err := decodeValue(dec, at+"."+key, depth+1)
				if err != nil {
					return nil, err
				}
				obj[key] = child
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("%s: invalid JSON: %w", at, err)
			}
			return obj, nil
		case '[':
			arr := []any{}
			for i := 0; dec.More(); i++ {
				child, err := decodeValue(dec, fmt.Sprintf("%s[%d]", at, i), depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, child)
			}
			if _, err := dec.Token(); err != nil {
				return nil, fmt.Errorf("%s: invalid JSON: %w", at, err)
			}
			return arr, nil
		}
		return nil, fmt.Errorf("%s: unexpected %q", at, t)
	default:
		return tok, nil
	}
}

// layerName is a layer's location in error messages.
func layerName(i int, layer map[string]any) string {
	if n, ok := layer["name"].(string); ok {
		return fmt.Sprintf("layer[%d] %q", i, n)
	}
	return fmt.Sprintf("layer[%d]", i)
}

// isIntLiteral reports whether a JSON number is spelled as an integer:
// serde_json reads 1.0 or 1e3 as a float and refuses it for integer fields.
func isIntLiteral(n json.Number) bool {
	return !strings.ContainsAny(string(n), ".eE")
}
