// Command dashboard builds the web dashboard of infera-gateway without Node:
// it checks every npm package pinned by gateway/dashboard/web's
// package-lock.json against the tarball committed under web/npm (sha512, the
// lockfile's "integrity"), unpacks the tarballs into a temporary
// node_modules, and bundles web/src with esbuild's Go API into
// gateway/dashboard/dist (index.html, app.js, app.css and the third-party
// licenses). The output is byte-for-byte reproducible, so `make verify`
// rebuilds it and fails on a diff. Run from the repository root:
//
//	cd hack/tools/dashboard && go run . -root ../../..
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

func main() {
	root := flag.String("root", "../../..", "repository root")
	flag.Parse()
	if err := build(*root, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

// lockfile is the part of an npm lockfile (v3) the build reads.
type lockfile struct {
	LockfileVersion int                    `json:"lockfileVersion"`
	Packages        map[string]lockPackage `json:"packages"`
}

type lockPackage struct {
	Version      string            `json:"version"`
	Integrity    string            `json:"integrity"`
	License      string            `json:"license"`
	Dependencies map[string]string `json:"dependencies"`
	Dev          bool              `json:"dev"`
}

// pkg is one pinned npm package.
type pkg struct {
	Name, Version, Integrity, License string
}

// tarballName is where a package's tarball is committed under web/npm:
// "@scope/name" 1.2.3 becomes "scope-name-1.2.3.tgz", like `npm pack`.
func (p pkg) tarballName() string {
	return strings.ReplaceAll(strings.TrimPrefix(p.Name, "@"), "/", "-") + "-" + p.Version + ".tgz"
}

// readLock returns the packages a lockfile pins, sorted by name. Every
// dependency of the root package must be pinned to an exact version.
func readLock(b []byte) ([]pkg, error) {
	var l lockfile
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("failed to decode package-lock.json: %w", err)
	}
	if l.LockfileVersion != 3 {
		return nil, fmt.Errorf("package-lock.json: lockfileVersion is %d, want 3", l.LockfileVersion)
	}
	rootPkg, ok := l.Packages[""]
	if !ok {
		return nil, errors.New(`package-lock.json: packages[""] (the root package) is missing`)
	}
	var out []pkg
	for key, p := range l.Packages {
		if key == "" || p.Dev {
			continue
		}
		name, ok := strings.CutPrefix(key, "node_modules/")
		if !ok || strings.Contains(name, "/node_modules/") {
			return nil, fmt.Errorf("package-lock.json: packages[%q]: nested packages are not supported; dedupe the tree", key)
		}
		if p.Version == "" || !strings.HasPrefix(p.Integrity, "sha512-") {
			return nil, fmt.Errorf("package-lock.json: packages[%q]: version and a sha512 integrity are required", key)
		}
		out = append(out, pkg{Name: name, Version: p.Version, Integrity: p.Integrity, License: p.License})
	}
	for dep, want := range rootPkg.Dependencies {
		i := slices.IndexFunc(out, func(p pkg) bool { return p.Name == dep })
		if i < 0 {
			return nil, fmt.Errorf("package-lock.json: dependency %q of the root package is not locked", dep)
		}
		if out[i].Version != want {
			return nil, fmt.Errorf("package-lock.json: dependency %q is %q in the root package but %s is locked; pin exact versions", dep, want, out[i].Version)
		}
	}
	slices.SortFunc(out, func(a, b pkg) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// verify checks a tarball against the lockfile's integrity (Subresource
// Integrity form: "sha512-" and the base64 digest).
func verify(p pkg, tgz []byte) error {
	sum := sha512.Sum512(tgz)
	if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != p.Integrity {
		return fmt.Errorf("npm/%s: integrity %s does not match package-lock.json's %s for %s@%s", p.tarballName(), got, p.Integrity, p.Name, p.Version)
	}
	return nil
}

// unpack writes an npm tarball's files (under its "package/" folder) to dir.
func unpack(tgz []byte, dir string) (license []byte, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return license, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		rel, ok := strings.CutPrefix(name, "package/")
		if !ok || !filepath.IsLocal(rel) {
			return nil, fmt.Errorf("unexpected path %q in the tarball", h.Name)
		}
		b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
		if err != nil {
			return nil, err
		}
		if strings.EqualFold(rel, "LICENSE") || strings.EqualFold(rel, "LICENSE.md") {
			license = b
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return nil, err
		}
	}
}

func build(root string, log io.Writer) error {
	web := filepath.Join(root, "gateway", "dashboard", "web")
	dist := filepath.Join(root, "gateway", "dashboard", "dist")
	lock, err := os.ReadFile(filepath.Join(web, "package-lock.json"))
	if err != nil {
		return err
	}
	pkgs, err := readLock(lock)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "temper-dashboard-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	nodeModules := filepath.Join(tmp, "node_modules")
	var notices bytes.Buffer
	notices.WriteString("Third-party software bundled into app.js, as pinned by gateway/dashboard/web/package-lock.json.\n")
	for _, p := range pkgs {
		tgz, err := os.ReadFile(filepath.Join(web, "npm", p.tarballName()))
		if err != nil {
			return fmt.Errorf("%s@%s is locked but its tarball is missing (npm pack %s@%s into gateway/dashboard/web/npm): %w", p.Name, p.Version, p.Name, p.Version, err)
		}
		if err := verify(p, tgz); err != nil {
			return err
		}
		lic, err := unpack(tgz, filepath.Join(nodeModules, filepath.FromSlash(p.Name)))
		if err != nil {
			return fmt.Errorf("failed to unpack %s: %w", p.tarballName(), err)
		}
		fmt.Fprintf(&notices, "\n==== %s@%s (%s) ====\n\n%s", p.Name, p.Version, p.License, lic)
	}
	entries, err := os.ReadDir(filepath.Join(web, "npm"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !slices.ContainsFunc(pkgs, func(p pkg) bool { return p.tarballName() == e.Name() }) {
			return fmt.Errorf("gateway/dashboard/web/npm/%s is not in package-lock.json; remove it", e.Name())
		}
	}

	res := api.Build(api.BuildOptions{
		AbsWorkingDir:     mustAbs(web),
		EntryPoints:       []string{"src/main.tsx"},
		EntryNames:        "app",
		Outdir:            "out",
		Bundle:            true,
		Write:             false,
		Format:            api.FormatIIFE,
		Platform:          api.PlatformBrowser,
		Target:            api.ES2020,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		JSX:               api.JSXAutomatic,
		JSXImportSource:   "preact",
		NodePaths:         []string{nodeModules},
		LegalComments:     api.LegalCommentsNone,
		Charset:           api.CharsetUTF8,
		LogLevel:          api.LogLevelWarning,
		Define:            map[string]string{"process.env.NODE_ENV": `"production"`},
		Tsconfig:          "tsconfig.json",
	})
	if len(res.Errors) > 0 {
		msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
		return fmt.Errorf("esbuild failed:\n%s", strings.Join(msgs, ""))
	}
	out := map[string][]byte{"THIRD_PARTY_LICENSES.txt": notices.Bytes()}
	html, err := os.ReadFile(filepath.Join(web, "index.html"))
	if err != nil {
		return err
	}
	out["index.html"] = html
	for _, f := range res.OutputFiles {
		out[filepath.Base(f.Path)] = f.Contents
	}
	if err := os.RemoveAll(dist); err != nil {
		return err
	}
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	slices.Sort(names)
	var total, totalGz int
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dist, n), out[n], 0o644); err != nil {
			return err
		}
		gz := gzipLen(out[n])
		total, totalGz = total+len(out[n]), totalGz+gz
		fmt.Fprintf(log, "gateway/dashboard/dist/%-26s %8d bytes, %7d gzip\n", n, len(out[n]), gz)
	}
	fmt.Fprintf(log, "gateway/dashboard/dist/ total %24d bytes, %7d gzip (%.1f KiB)\n", total, totalGz, float64(totalGz)/1024)
	return nil
}

func gzipLen(b []byte) int {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Len()
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}
