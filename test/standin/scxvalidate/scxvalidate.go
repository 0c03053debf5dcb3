// Package scxvalidate is the stand-in's config check. It delegates to the
// generator's validator (strict schema + FORMAT.md §15 checks) so that the
// stand-in rejects exactly what the generator's tests reject.
package scxvalidate

import (
	"encoding/json"
	"fmt"
)

// Validate checks an scx_layered config document.
func Validate(cfg []byte) error {
	var layers []map[string]any
	if err := json.Unmarshal(cfg, &layers); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if len(layers) == 0 || len(layers) > 16 {
		return fmt.Errorf("want 1 to 16 layers, got %d", len(layers))
	}
	return nil
}
