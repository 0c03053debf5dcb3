package inferactl

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
)

// APIVersion is what -o json|yaml|name call the gateway's messages: the
// proto package infera.v1, as infera.io/v1. Each item carries the message's
// fields as the REST API spells them (protojson) plus apiVersion, kind and
// metadata.name (and namespace), so kubectl's printers and -o name work.
const APIVersion = "infera.io/v1"

// printer is the -o flag of one command.
type printer struct {
	flags *genericclioptions.PrintFlags
	wide  bool // whether -o wide is offered
}

func addPrinter(c *cobra.Command, wide bool) *printer {
	p := &printer{flags: genericclioptions.NewPrintFlags("").WithDefaultOutput(""), wide: wide}
	p.flags.AddFlags(c)
	formats := p.flags.AllowedFormats()
	if wide {
		formats = append(formats, "wide")
	}
	c.Flags().Lookup("output").Usage = "Output format. One of: (" + strings.Join(formats, ", ") + ")."
	_ = c.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return formats, cobra.ShellCompDirectiveNoFileComp
	})
	return p
}

func (p *printer) format() string { return *p.flags.OutputFormat }

// human is true for the default and -o wide.
func (p *printer) human() bool { return p.format() == "" || (p.wide && p.format() == "wide") }

func (p *printer) check() error {
	if p.human() {
		return nil
	}
	if _, err := p.flags.ToPrinter(); err != nil {
		return &Error{Code: ExitUsage, Msg: err.Error(), Err: err}
	}
	return nil
}

// print writes the table for the default and -o wide, else obj with
// kubectl's printers.
func (p *printer) print(w io.Writer, table *metav1.Table, obj runtime.Object) error {
	if p.human() {
		return printers.NewTablePrinter(printers.PrintOptions{Wide: p.format() == "wide"}).PrintObj(table, w)
	}
	pr, err := p.flags.ToPrinter()
	if err != nil {
		return &Error{Code: ExitUsage, Msg: err.Error(), Err: err}
	}
	return pr.PrintObj(obj, w)
}

// item turns a gateway message into an unstructured object.
func item(kind string, m proto.Message, name, namespace string) (*unstructured.Unstructured, error) {
	b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, err
	}
	md := map[string]any{"name": name}
	if namespace != "" {
		md["namespace"] = namespace
	}
	obj["apiVersion"], obj["kind"], obj["metadata"] = APIVersion, kind, md
	return &unstructured.Unstructured{Object: obj}, nil
}

func list(items []*unstructured.Unstructured) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{}}}
	for _, it := range items {
		l.Items = append(l.Items, *it)
	}
	return l
}

// Table helpers: columns with priority 1 show with -o wide only.

type column struct {
	name string
	wide bool
}

type metaTable = metav1.Table

func table(cols []column, rows [][]any) *metav1.Table {
	t := &metav1.Table{}
	for _, c := range cols {
		d := metav1.TableColumnDefinition{Name: c.name, Type: "string"}
		if c.wide {
			d.Priority = 1
		}
		t.ColumnDefinitions = append(t.ColumnDefinitions, d)
	}
	for _, r := range rows {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: r})
	}
	return t
}

// milli renders millicores the way kubectl shows CPU: "250m", "2".
func milli(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprint(m / 1000)
	}
	return fmt.Sprintf("%dm", m)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
