// Command images builds Temper's container images as OCI image layouts
// (make images): static Go binaries cross-compiled with `go build`, placed
// on a two-layer scratch image (passwd/group, then the binary) with
// go-containerregistry. No registry, no base image and no container
// runtime are needed; every timestamp is SOURCE_DATE_EPOCH, so two builds of
// the same tree give the same digests. Push a layout with
// `crane push bin/images/<name> <registry>/<name>:<tag>` (docs/operations.md).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	var (
		o         Options
		platforms string
		only      string
	)
	flag.StringVar(&o.RepoRoot, "repo-root", ".", "module root to build the binaries in")
	flag.StringVar(&o.OutDir, "out", "bin/images", "output directory; one OCI layout per image below it")
	flag.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated os/arch list")
	flag.StringVar(&o.Version, "version", "dev", "org.opencontainers.image.version and the layout's ref name (the tag to push)")
	flag.StringVar(&o.Revision, "revision", "", "org.opencontainers.image.revision (the git commit)")
	flag.StringVar(&o.Source, "source", "https://github.com/infera-io/temper", "org.opencontainers.image.source")
	flag.StringVar(&o.LDFlags, "ldflags", "", "extra -ldflags for go build (version stamps)")
	flag.StringVar(&only, "images", "", "comma-separated image names to build; empty means all")
	flag.Parse()

	if err := run(o, platforms, only); err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
}

func run(o Options, platforms, only string) error {
	var err error
	if o.Platforms, err = ParsePlatforms(platforms); err != nil {
		return err
	}
	o.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: want seconds since 1970", s)
		}
		o.Created = time.Unix(sec, 0).UTC()
	}
	comps := Components
	if only != "" {
		want := strings.Split(only, ",")
		comps = nil
		for _, c := range Components {
			if slices.Contains(want, c.Name) {
				comps = append(comps, c)
			}
		}
		if len(comps) != len(want) {
			return fmt.Errorf("unknown image in -images=%s; known: %s", only, names())
		}
	}
	o.Log = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	results, err := Build(ctx, o, comps)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tPLATFORM\tDIGEST\tSIZE (compressed)\tLAYOUT")
	for _, r := range results {
		if r.Skipped {
			fmt.Fprintf(tw, "%s\t-\tskipped: %s does not exist\t\t\n", r.Component.Name, r.Component.Package)
			continue
		}
		fmt.Fprintf(tw, "%s\tindex\t%s\t\t%s\n", r.Component.Name, r.Digest, r.Dir)
		for _, p := range r.Platforms {
			fmt.Fprintf(tw, "\t%s/%s\t%s\t%.1f MiB\t\n", p.Platform.OS, p.Platform.Architecture, p.Digest, float64(p.CompressedBytes)/(1<<20))
		}
	}
	return tw.Flush()
}

func names() string {
	var n []string
	for _, c := range Components {
		n = append(n, c.Name)
	}
	return strings.Join(n, ",")
}
