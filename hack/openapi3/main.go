// Command openapi3 converts the gateway's Swagger 2.0 document (the one
// infera-gateway serves at /api/v1/openapi.json, generated from
// cluster.proto) to OpenAPI 3 with kin-openapi, for generators that read
// only OpenAPI 3 (oapi-codegen builds the test client from it).
//
//	go run ./hack/openapi3 -in apis/proto/infera/v1/cluster.swagger.json -out test/integration/gateway/oapiclient/openapi3.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/getkin/kin-openapi/openapi2"
	"github.com/getkin/kin-openapi/openapi2conv"
)

func main() {
	in := flag.String("in", "", "Swagger 2.0 document to read")
	out := flag.String("out", "", "OpenAPI 3 document to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "openapi3:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if in == "" || out == "" {
		return fmt.Errorf("-in and -out are required")
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var d2 openapi2.T
	if err := json.Unmarshal(raw, &d2); err != nil {
		return fmt.Errorf("%s is not Swagger 2.0: %w", in, err)
	}
	d3, err := openapi2conv.ToV3(&d2)
	if err != nil {
		return fmt.Errorf("converting %s: %w", in, err)
	}
	if err := d3.Validate(context.Background()); err != nil {
		return fmt.Errorf("the converted document is invalid: %w", err)
	}
	b, err := json.MarshalIndent(d3, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}
