package gateway

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// LoadConfig reads a GatewayConfiguration file strictly (an unknown field is
// an error naming it), defaults and validates it; "" means all defaults.
func LoadConfig(path string) (configv1alpha1.GatewayConfiguration, error) {
	var c configv1alpha1.GatewayConfiguration
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("failed to read gateway configuration: %w", err)
		}
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return c, fmt.Errorf("failed to decode gateway configuration %s: %w", path, err)
		}
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("invalid gateway configuration %q: %w", path, err)
	}
	return c, nil
}
