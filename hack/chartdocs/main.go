// Command chartdocs writes a chart's README.md from its values.yaml: every
// value with its type, default and the "# --" comment above it, put into
// README.md.gotmpl at {{ .Values }}. A value without a "# --" comment is an
// error, so every value a user can set is documented.
//
//	go run ./hack/chartdocs charts/temper          # write README.md
//	go run ./hack/chartdocs -check charts/temper   # fail if README.md is stale
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	yaml "go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"
)

func main() {
	check := flag.Bool("check", false, "compare with the README.md on disk instead of writing it")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: chartdocs [-check] <chart dir>")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	want, err := Render(dir)
	if err == nil {
		path := filepath.Join(dir, "README.md")
		if *check {
			var got []byte
			if got, err = os.ReadFile(path); err == nil && !bytes.Equal(got, want) {
				err = fmt.Errorf("%s is stale: run make chart-docs", path)
			}
		} else {
			err = os.WriteFile(path, want, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chartdocs:", err)
		os.Exit(1)
	}
}

// Row is one documented value.
type Row struct {
	Key, Type, Default, Description string
}

// Render returns the README of the chart in dir.
func Render(dir string) ([]byte, error) {
	values, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	rows, err := Rows(values)
	if err != nil {
		return nil, err
	}
	tmplText, err := os.ReadFile(filepath.Join(dir, "README.md.gotmpl"))
	if err != nil {
		return nil, err
	}
	chart := struct {
		Name, Version, AppVersion, KubeVersion string
	}{}
	chartYAML, err := os.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	if err := sigsyaml.Unmarshal(chartYAML, &chart); err != nil {
		return nil, fmt.Errorf("failed to read Chart.yaml: %w", err)
	}
	var table strings.Builder
	table.WriteString("| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n")
	for _, r := range rows {
		fmt.Fprintf(&table, "| `%s` | %s | `%s` | %s |\n", r.Key, r.Type, strings.ReplaceAll(r.Default, "|", `\|`), strings.ReplaceAll(r.Description, "|", `\|`))
	}
	t, err := template.New("README.md.gotmpl").Option("missingkey=error").Parse(string(tmplText))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	err = t.Execute(&out, map[string]any{"Values": table.String(), "Chart": chart})
	return out.Bytes(), err
}

// Rows lists the documented values of a values.yaml in file order.
func Rows(values []byte) ([]Row, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("failed to parse values.yaml: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml is not a mapping")
	}
	var rows []Row
	var errs []error
	walk(doc.Content[0], "", &rows, &errs)
	return rows, errors.Join(errs...)
}

func walk(m *yaml.Node, prefix string, rows *[]Row, errs *[]error) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		desc, documented := description(k.HeadComment)
		if !documented && v.Kind == yaml.MappingNode && len(v.Content) > 0 {
			walk(v, key+".", rows, errs)
			continue
		}
		if !documented {
			*errs = append(*errs, fmt.Errorf("values.yaml line %d: %s has no \"# --\" comment", k.Line, key))
			continue
		}
		var val any
		if err := v.Decode(&val); err != nil {
			*errs = append(*errs, fmt.Errorf("values.yaml line %d: %s: %w", k.Line, key, err))
			continue
		}
		def, err := json.Marshal(val)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("values.yaml line %d: %s: %w", k.Line, key, err))
			continue
		}
		*rows = append(*rows, Row{Key: key, Type: typeOf(v), Default: string(def), Description: desc})
	}
}

// description returns the text of the "# --" comment block directly above a
// key (continuation lines start with "# " too).
func description(comment string) (string, bool) {
	lines := strings.Split(comment, "\n")
	for i, l := range lines {
		if rest, ok := strings.CutPrefix(l, "# -- "); ok {
			parts := []string{rest}
			for _, c := range lines[i+1:] {
				parts = append(parts, strings.TrimSpace(strings.TrimPrefix(c, "#")))
			}
			return strings.Join(parts, " "), true
		}
	}
	return "", false
}

func typeOf(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch v.Tag {
	case "!!bool":
		return "bool"
	case "!!int":
		return "int"
	case "!!float":
		return "float"
	default:
		return "string"
	}
}
