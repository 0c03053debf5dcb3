// Package scxvalidate is the stand-in's config check. It delegates to the
// generator's validator (strict JSON schema + FORMAT.md §15 code checks) so
// that the stand-in rejects exactly what the generator's tests reject.
package scxvalidate

import "github.com/infera-io/temper/nodeagent/layered/scxschema"

// Validate checks an scx_layered config document.
func Validate(cfg []byte) error { return scxschema.Validate(cfg) }
