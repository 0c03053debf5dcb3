package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotation and label keys (image-spec annotations.md).
const (
	labelVersion  = "org.opencontainers.image.version"
	labelRevision = "org.opencontainers.image.revision"
	labelSource   = "org.opencontainers.image.source"
	labelCreated  = "org.opencontainers.image.created"
	labelTitle    = "org.opencontainers.image.title"
	refName       = "org.opencontainers.image.ref.name"
)

// Options say what to build and where.
type Options struct {
	// RepoRoot is the module root `go build` runs in.
	RepoRoot string
	// OutDir receives one OCI image layout per component: OutDir/<name>/.
	OutDir string
	// Platforms are the os/arch pairs of every image.
	Platforms []v1.Platform
	// Version, Revision and Source become the org.opencontainers.image.*
	// labels; Version also names the layout's single entry.
	Version, Revision, Source string
	// Created is every timestamp in the image: tar entries, config, history.
	// A fixed value (SOURCE_DATE_EPOCH) makes the digests reproducible.
	Created time.Time
	// LDFlags are extra linker flags (for example version stamps).
	LDFlags string
	// Log receives one line per step; nil discards.
	Log io.Writer
}

// PlatformResult is one architecture's image of a component.
type PlatformResult struct {
	Platform v1.Platform
	Digest   v1.Hash
	// CompressedBytes is what a registry stores and a node pulls: the sum
	// of the layer blobs, the config and the manifest.
	CompressedBytes int64
}

// Result is one component's image index.
type Result struct {
	Component Component
	Dir       string
	Digest    v1.Hash
	Platforms []PlatformResult
	// Skipped is set for an optional component whose package is missing.
	Skipped bool
}

// ParsePlatforms reads "linux/amd64,linux/arm64".
func ParsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for p := range strings.SplitSeq(s, ",") {
		p = strings.TrimSpace(p)
		osName, arch, ok := strings.Cut(p, "/")
		if !ok || osName == "" || arch == "" || strings.Contains(arch, "/") {
			return nil, fmt.Errorf("invalid platform %q: want os/arch, for example linux/amd64", p)
		}
		out = append(out, v1.Platform{OS: osName, Architecture: arch})
	}
	if len(out) == 0 {
		return nil, errors.New("no platform given")
	}
	return out, nil
}

// Build compiles every component for every platform and writes an OCI image
// layout per component. It stops at the first error.
func Build(ctx context.Context, o Options, comps []Component) ([]Result, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	work, err := os.MkdirTemp("", "infera-images-")
	if err != nil {
		return nil, fmt.Errorf("failed to create a build directory: %w", err)
	}
	defer os.RemoveAll(work)

	base, err := baseLayer(o.Created)
	if err != nil {
		return nil, err
	}
	built := map[string]string{} // package and platform → binary
	var results []Result
	for _, c := range comps {
		if _, err := os.Stat(filepath.Join(o.RepoRoot, c.Package)); err != nil {
			if c.Optional && errors.Is(err, os.ErrNotExist) {
				fmt.Fprintf(o.Log, ">> %s: skipped (%s does not exist yet)\n", c.Name, c.Package)
				results = append(results, Result{Component: c, Skipped: true})
				continue
			}
			return nil, fmt.Errorf("failed to find the package of image %s: %w", c.Name, err)
		}
		r, err := buildComponent(ctx, o, c, base, work, built)
		if err != nil {
			return nil, err
		}
		results = append(results, r)
	}
	return results, nil
}

func buildComponent(ctx context.Context, o Options, c Component, base v1.Layer, work string, built map[string]string) (Result, error) {
	res := Result{Component: c, Dir: filepath.Join(o.OutDir, c.Name)}
	labels := map[string]string{
		labelVersion:  o.Version,
		labelRevision: o.Revision,
		labelSource:   o.Source,
		labelCreated:  o.Created.UTC().Format(time.RFC3339),
		labelTitle:    c.Name,
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		key := c.Package + " " + p.OS + "/" + p.Architecture
		bin, ok := built[key]
		if !ok {
			bin = filepath.Join(work, fmt.Sprintf("%d", len(built)))
			fmt.Fprintf(o.Log, ">> %s %s/%s: go build %s\n", c.Name, p.OS, p.Architecture, c.Package)
			if err := goBuild(ctx, o, c.Package, p, bin); err != nil {
				return res, err
			}
			built[key] = bin
		}
		img, err := image(o, c, p, base, bin, labels)
		if err != nil {
			return res, err
		}
		pr := PlatformResult{Platform: p}
		if pr.Digest, err = img.Digest(); err != nil {
			return res, fmt.Errorf("failed to digest image %s %s/%s: %w", c.Name, p.OS, p.Architecture, err)
		}
		if pr.CompressedBytes, err = storedSize(img); err != nil {
			return res, err
		}
		res.Platforms = append(res.Platforms, pr)
		plat := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &plat}})
	}
	idx, ok := mutate.Annotations(idx, labels).(v1.ImageIndex)
	if !ok {
		return res, errors.New("go-containerregistry: annotating an index did not return an index")
	}
	var err error
	if res.Digest, err = idx.Digest(); err != nil {
		return res, fmt.Errorf("failed to digest the index of %s: %w", c.Name, err)
	}
	if err := writeLayout(res.Dir, idx, o.Version); err != nil {
		return res, fmt.Errorf("failed to write the OCI layout of %s: %w", c.Name, err)
	}
	return res, nil
}

// goBuild cross-compiles a static, path-free binary: CGO off, -trimpath,
// no VCS stamp (the revision is a label instead), stripped.
func goBuild(ctx context.Context, o Options, pkg string, p v1.Platform, out string) error {
	ldflags := strings.TrimSpace("-s -w -buildid= " + o.LDFlags)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
	cmd.Dir = o.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture, "GOFLAGS=")
	cmd.Stdout = o.Log
	cmd.Stderr = o.Log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("failed to build %s for %s/%s: %w", pkg, p.OS, p.Architecture, err)
	}
	return nil
}

// image assembles one platform's image: the shared base layer, then the
// binary; no shell, no package manager, nothing else.
func image(o Options, c Component, p v1.Platform, base v1.Layer, bin string, labels map[string]string) (v1.Image, error) {
	binLayer, err := binaryLayer(bin, "/"+c.Name, o.Created)
	if err != nil {
		return nil, err
	}
	created := v1.Time{Time: o.Created.UTC()}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "temper: /etc/passwd, /etc/group, /tmp", Comment: "make images"}},
		mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{Created: created, CreatedBy: "temper: go build -trimpath " + c.Package, Comment: "make images"}},
	)
	if err != nil {
		return nil, fmt.Errorf("failed to add layers to %s: %w", c.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("failed to read the config of %s: %w", c.Name, err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Created = created
	cf.Author = "Temper"
	cf.Config = v1.Config{
		User:       c.User,
		Entrypoint: []string{"/" + c.Name},
		WorkingDir: "/",
		Env:        []string{"PATH=/"},
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("failed to set the config of %s: %w", c.Name, err)
	}
	return img, nil
}

func storedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, fmt.Errorf("failed to read a manifest: %w", err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return 0, fmt.Errorf("failed to read a manifest: %w", err)
	}
	n := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// writeLayout replaces dir with an OCI layout whose index.json has one
// entry, the multi-arch index, named by the version. `crane push <dir> <ref>`
// pushes exactly that entry.
func writeLayout(dir string, idx v1.ImageIndex, version string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refName: version}))
}
