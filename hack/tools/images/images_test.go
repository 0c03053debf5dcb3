package main

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The stand-in components: a tiny main package, built the way the real ones
// are, once as non-root and once as root.
var testComponents = []Component{
	{Name: "hello", Package: "./testdata/hello", User: nonRootUser},
	{Name: "hello-root", Package: "./testdata/hello", User: rootUser},
	{Name: "not-yet", Package: "./testdata/absent", User: nonRootUser, Optional: true},
}

func testOptions(t *testing.T) Options {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		RepoRoot:  wd,
		OutDir:    t.TempDir(),
		Platforms: []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}},
		Version:   "v0.0.0-test",
		Revision:  "0123456789abcdef0123456789abcdef01234567",
		Source:    "https://github.com/infera-io/temper",
		Created:   time.Unix(1700000000, 0).UTC(),
	}
}

// Two builds into different directories, each compiling its own binaries,
// give byte-identical indexes: what `make images` run twice on one tree
// gives, and what lets a user check an image against its source.
func TestBuildIsReproducible(t *testing.T) {
	var digests [2][]v1.Hash
	for i := range digests {
		o := testOptions(t)
		res, err := Build(context.Background(), o, testComponents)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Skipped {
				continue
			}
			digests[i] = append(digests[i], r.Digest)
			// The layout on disk names the same index the builder reports.
			if got := layoutIndex(t, r.Dir).Digest; got != r.Digest {
				t.Errorf("%s: layout holds %s, builder reported %s", r.Component.Name, got, r.Digest)
			}
		}
	}
	if len(digests[0]) != 2 {
		t.Fatalf("built %d images, want 2 (the optional one skipped)", len(digests[0]))
	}
	if !slices.Equal(digests[0], digests[1]) {
		t.Errorf("digests differ between two builds: %v vs %v", digests[0], digests[1])
	}
	if digests[0][0] == digests[0][1] {
		t.Errorf("a root and a non-root image have the same digest %s", digests[0][0])
	}

	// The timestamp is part of the content: another SOURCE_DATE_EPOCH,
	// another digest (so the reproducibility above is not a constant).
	o := testOptions(t)
	o.Created = o.Created.Add(time.Second)
	res, err := Build(context.Background(), o, testComponents[:1])
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Digest == digests[0][0] {
		t.Errorf("changing the timestamp kept digest %s", res[0].Digest)
	}
}

func TestMissingRequiredPackageFails(t *testing.T) {
	o := testOptions(t)
	_, err := Build(context.Background(), o, []Component{{Name: "gone", Package: "./testdata/absent", User: nonRootUser}})
	if err == nil || !strings.Contains(err.Error(), "image gone") {
		t.Fatalf("err = %v, want a failure naming image gone", err)
	}
}

func TestParsePlatforms(t *testing.T) {
	got, err := ParsePlatforms("linux/amd64, linux/arm64")
	if err != nil || len(got) != 2 || got[1].Architecture != "arm64" {
		t.Fatalf("ParsePlatforms = %v, %v", got, err)
	}
	for _, bad := range []string{"", "linux", "linux/arm/v7/x", "/amd64"} {
		if _, err := ParsePlatforms(bad); err == nil {
			t.Errorf("ParsePlatforms(%q) accepted", bad)
		}
	}
}

// Push the layout to a registry on loopback the way `crane push` does
// (the layout's single entry), pull it back by tag, and check what a
// kubelet would see: the same digest, both platforms, the user, entrypoint
// and labels, and a binary that runs.
func TestPushPullThroughRegistry(t *testing.T) {
	o := testOptions(t)
	res, err := Build(context.Background(), o, testComponents[:2])
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	for i, r := range res {
		want := testComponents[i]
		t.Run(want.Name, func(t *testing.T) {
			// What crane push does with a directory: open the layout, take
			// its single entry.
			lp, err := layout.ImageIndexFromPath(r.Dir)
			if err != nil {
				t.Fatal(err)
			}
			desc := layoutIndex(t, r.Dir)
			if desc.Annotations[refName] != o.Version {
				t.Errorf("layout entry ref.name = %q, want %q", desc.Annotations[refName], o.Version)
			}
			local, err := lp.ImageIndex(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			ref, err := name.ParseReference(host+"/temper/"+want.Name+":"+o.Version, name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteIndex(ref, local); err != nil {
				t.Fatalf("push: %v", err)
			}

			pulled, err := remote.Index(ref)
			if err != nil {
				t.Fatalf("pull: %v", err)
			}
			if d, _ := pulled.Digest(); d != r.Digest {
				t.Fatalf("pulled digest %s, pushed %s", d, r.Digest)
			}
			if mt, _ := pulled.MediaType(); mt != types.OCIImageIndex {
				t.Errorf("index media type %s, want %s", mt, types.OCIImageIndex)
			}
			im, err := pulled.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if im.Annotations[labelRevision] != o.Revision {
				t.Errorf("index annotation %s = %q", labelRevision, im.Annotations[labelRevision])
			}
			var arches []string
			for _, m := range im.Manifests {
				arches = append(arches, m.Platform.Architecture)
				img, err := pulled.Image(m.Digest)
				if err != nil {
					t.Fatal(err)
				}
				checkImage(t, img, want, o, *m.Platform)
			}
			if !slices.Equal(arches, []string{"amd64", "arm64"}) {
				t.Errorf("platforms %v, want amd64 and arm64", arches)
			}
		})
	}
}

func checkImage(t *testing.T, img v1.Image, c Component, o Options, p v1.Platform) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != p.OS || cf.Architecture != p.Architecture {
		t.Errorf("%s: config says %s/%s", p.Architecture, cf.OS, cf.Architecture)
	}
	if cf.Config.User != c.User {
		t.Errorf("%s: user %q, want %q", p.Architecture, cf.Config.User, c.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/" + c.Name}) {
		t.Errorf("%s: entrypoint %v", p.Architecture, cf.Config.Entrypoint)
	}
	if !cf.Created.Equal(o.Created) {
		t.Errorf("%s: created %v, want %v", p.Architecture, cf.Created, o.Created)
	}
	for k, v := range map[string]string{labelVersion: o.Version, labelRevision: o.Revision, labelSource: o.Source} {
		if cf.Config.Labels[k] != v {
			t.Errorf("%s: label %s = %q, want %q", p.Architecture, k, cf.Config.Labels[k], v)
		}
	}

	files := extract(t, img)
	if _, ok := files["bin/sh"]; ok {
		t.Errorf("%s: the image has a shell", p.Architecture)
	}
	if !strings.Contains(string(files["etc/passwd"].data), ":65532:65532:") {
		t.Errorf("%s: /etc/passwd lacks the non-root user: %q", p.Architecture, files["etc/passwd"].data)
	}
	bin, ok := files[c.Name]
	if !ok || bin.mode&0o111 == 0 {
		t.Fatalf("%s: /%s missing or not executable", p.Architecture, c.Name)
	}
	for name, f := range files {
		if !f.mtime.Equal(o.Created) {
			t.Errorf("%s: %s has mtime %v", p.Architecture, name, f.mtime)
		}
	}
	// The binary is static and runs as is on this architecture.
	if p.Architecture == runtime.GOARCH {
		path := filepath.Join(t.TempDir(), c.Name)
		if err := os.WriteFile(path, bin.data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(path).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "hello from an image") {
			t.Errorf("running /%s from the image: %v: %s", c.Name, err, out)
		}
	}
}

type file struct {
	data  []byte
	mode  int64
	mtime time.Time
}

func extract(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]file{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimSuffix(h.Name, "/")] = file{data: b, mode: h.Mode, mtime: h.ModTime}
	}
}

// layoutIndex returns the single entry of a layout's index.json.
func layoutIndex(t *testing.T, dir string) v1.Descriptor {
	t.Helper()
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		t.Fatalf("%s/index.json: want one image index entry, got %+v", dir, m.Manifests)
	}
	return m.Manifests[0]
}
