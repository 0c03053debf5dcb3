package observe

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// jsonPaths lists every JSON field t produces, as docs/observe.md names
// them: "a.b" for nested objects, "a[].b" for lists of objects.
func jsonPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return nil
	}
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out = append(out, p)
		out = append(out, jsonPaths(f.Type, p)...)
	}
	return out
}

// TestSchemaDocListsEveryField keeps docs/observe.md from drifting: every
// field the snapshot can produce is documented, and the doc names the
// schema version.
func TestSchemaDocListsEveryField(t *testing.T) {
	doc, err := os.ReadFile("../../docs/observe.md")
	if err != nil {
		t.Fatalf("failed to read the schema doc: %v", err)
	}
	paths := jsonPaths(reflect.TypeFor[Snapshot](), "")
	if len(paths) < 60 {
		t.Fatalf("found only %d fields: the walk is broken", len(paths))
	}
	for _, p := range paths {
		if !strings.Contains(string(doc), "`"+p+"`") {
			t.Errorf("docs/observe.md does not document `%s`", p)
		}
	}
	if !strings.Contains(string(doc), "`schema_version` is 1") {
		t.Errorf("docs/observe.md does not state the current schema version (%d)", SchemaVersion)
	}
}
