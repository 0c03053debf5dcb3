package chart

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/infera-io/temper/test/envtest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// releaseNamespace is where the golden renders install, unless a values
// file's "# args:" line says otherwise.
const releaseNamespace = "infera-system"

// repoRoot is the repository root; chart paths hang off it.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// helm runs the pinned helm from bin/ (make tools) and returns stdout. A
// missing helm is a failure, not a skip: `make test` installs it.
func helm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(envtest.BinDir(root), "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm is not installed at %s: run make tools (%v)", bin, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No user configuration, no repositories, no cache: the chart is local.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

// valuesCase is one file under testdata/values; its "# args:" line adds
// helm template flags (a namespace, --api-versions).
type valuesCase struct {
	name, path string
	args       []string
	namespace  string
}

func valuesCases(t *testing.T) []valuesCase {
	t.Helper()
	files, err := filepath.Glob("testdata/values/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no values files under testdata/values: %v", err)
	}
	var cases []valuesCase
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		c := valuesCase{name: strings.TrimSuffix(filepath.Base(f), ".yaml"), path: abs, namespace: releaseNamespace}
		for l := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(l, "# args:"); ok {
				c.args = strings.Fields(rest)
			}
		}
		for i, a := range c.args {
			if a == "--namespace" && i+1 < len(c.args) {
				c.namespace = c.args[i+1]
			}
		}
		cases = append(cases, c)
	}
	return cases
}

// render is `helm template` of the chart with the CRDs.
func render(t *testing.T, c valuesCase, extra ...string) []byte {
	t.Helper()
	args := []string{"template", "temper", "charts/temper", "--include-crds", "--namespace", c.namespace, "-f", c.path}
	args = append(args, c.args...)
	out, err := helm(t, append(args, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// strictDecoder knows every built-in type and the CRD type, and refuses
// unknown or duplicate fields: a typo in a template is an error here, not
// a field the API server silently drops.
func strictDecoder(t *testing.T) (runtime.Decoder, *runtime.Scheme) {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer(), s
}

// decodeAll splits a render into typed objects. Kinds of CRDs the chart does
// not own (ServiceMonitor, PrometheusRule) come back unstructured.
func decodeAll(t *testing.T, manifest []byte) []client.Object {
	t.Helper()
	dec, s := strictDecoder(t)
	r := utilyaml.NewYAMLReader(bufioReader(manifest))
	var objs []client.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			t.Fatalf("not YAML: %v\n%s", err, doc)
		}
		if !s.Recognizes(u.GroupVersionKind()) {
			objs = append(objs, u)
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("strict decoding %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		co, ok := obj.(client.Object)
		if !ok {
			t.Fatalf("%s is not an object", u.GetKind())
		}
		objs = append(objs, co)
	}
}

func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for l := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out.Write(l)
		}
	}
	return out.Bytes()
}

// find returns the one object of a kind and name, typed as T.
func find[T client.Object](t *testing.T, objs []client.Object, name string) T {
	t.Helper()
	var zero T
	for _, o := range objs {
		if typed, ok := o.(T); ok && o.GetName() == name {
			return typed
		}
	}
	t.Fatalf("no %T named %s in the render", zero, name)
	return zero
}

func findAll[T client.Object](objs []client.Object) []T {
	var out []T
	for _, o := range objs {
		if typed, ok := o.(T); ok {
			out = append(out, typed)
		}
	}
	return out
}

func kinds(objs []client.Object) map[string]int {
	m := map[string]int{}
	for _, o := range objs {
		m[o.GetObjectKind().GroupVersionKind().Kind]++
	}
	return m
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
