// Command inferactl is Temper's command line, also installed as the kubectl
// plugin kubectl-infera (the name it is called by picks the help text). The
// commands live in package inferactl; docs/cli.md describes them and their
// exit codes.
package main

import (
	"context"
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/infera-io/temper/inferactl"
)

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	os.Exit(inferactl.Run(context.Background(), os.Args[0], os.Args[1:], streams))
}
