package main

// The users an image may run as. The base layer's /etc/passwd and /etc/group
// name both, so `id` in a debug container and the kubelet's runAsNonRoot
// check see a numeric, named user.
const (
	// rootUser is for components that must write kernel interfaces the
	// kubelet owns (cgroup files) and load eBPF programs: the node agent.
	rootUser = "0:0"
	// nonRootUser is distroless' "nonroot" (65532), for everything else.
	nonRootUser = "65532:65532"
)

// Component is one image: the Go main package to build and how it runs.
type Component struct {
	// Name is the image name and the binary's name, at /<Name> in the image.
	Name string
	// Package is the main package, relative to the repository root.
	Package string
	// User is the image config's user (uid:gid).
	User string
	// Optional components are skipped, not failed, while their package does
	// not exist yet.
	Optional bool
}

// Components are the images `make images` builds. Adding an image is one
// line here; the chart's values name the same images.
var Components = []Component{
	// Writes cgroup files and /run/infera, loads eBPF and scx_layered: root
	// (the chart adds only the capabilities it needs, docs/operations.md).
	{Name: "infera-agent", Package: "./cmd/infera-agent", User: rootUser},
	{Name: "infera-manager", Package: "./cmd/infera-manager", User: nonRootUser},
	{Name: "infera-scheduler", Package: "./cmd/infera-scheduler", User: nonRootUser},
	{Name: "infera-gateway", Package: "./cmd/infera-gateway", User: nonRootUser, Optional: true},
}
