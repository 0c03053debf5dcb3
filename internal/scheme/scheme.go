// Package scheme builds the runtime.Scheme Temper's binaries and tests use:
// the client-go types plus infera.io/v1alpha1. Each caller gets its own
// scheme; nothing global is mutated.
package scheme

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

// New returns a new scheme with the client-go types and infera.io types.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("failed to add client-go types to the scheme: %w", err)
	}
	if err := inferav1alpha1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("failed to add infera.io types to the scheme: %w", err)
	}
	return s, nil
}
