package schedulerplugin

import (
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	kubeschedulerv1 "k8s.io/kube-scheduler/config/v1"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	schedscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	schedconfigv1 "k8s.io/kubernetes/pkg/scheduler/apis/config/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// ArgsGroupVersionKind is how kube-scheduler knows the plugin's args: the
// kind its configuration loader looks up for a pluginConfig entry named
// InferaDensity, in the group and version of the configuration file.
var ArgsGroupVersionKind = kubeschedulerv1.SchemeGroupVersion.WithKind(ArgsKind)

var (
	registerOnce sync.Once
	errRegister  error
)

// RegisterArgs registers InferaDensityArgs in kube-scheduler's
// configuration scheme, as the in-tree plugins' args are: as the external
// kind kubescheduler.config.k8s.io/v1 InferaDensityArgs and as its internal
// counterpart, with InferaDensityArgs.Default as the defaulting function.
// kube-scheduler then decodes the plugin's args strictly while it loads the
// configuration file (an unknown or mistyped field fails the start, named
// with its profile and pluginConfig index), defaults them (also when a
// profile enables the plugin with no pluginConfig entry), and hands New a
// typed *InferaDensityArgs, which New validates. Without the registration
// the args reach New as raw bytes, which New decodes the same way; the
// difference is only where an unknown field is reported.
//
// One Go type serves both versions: the args have no internal form that
// differs from the file's, so there is nothing to convert, and converting
// between the two kinds is a copy.
//
// kube-scheduler builds its schemes from package-level scheme builders:
// scheme.Scheme when its package initializes, and the separate scheme that
// defaults and converts plugin args the first time a configuration is
// loaded. RegisterArgs adds to both builders and to scheme.Scheme, so call
// it before the first configuration is loaded (cmd/infera-scheduler and
// schedulertest call it before building the scheduler); it returns an error
// if that scheme was built without the args. It is safe to call more than
// once and from several goroutines.
func RegisterArgs() error {
	registerOnce.Do(func() { errRegister = registerArgs() })
	return errRegister
}

func registerArgs() error {
	external := func(s *runtime.Scheme) error {
		s.AddKnownTypes(kubeschedulerv1.SchemeGroupVersion, &configv1alpha1.InferaDensityArgs{})
		s.AddTypeDefaultingFunc(&configv1alpha1.InferaDensityArgs{}, func(obj any) {
			obj.(*configv1alpha1.InferaDensityArgs).Default()
		})
		return nil
	}
	internal := func(s *runtime.Scheme) error {
		s.AddKnownTypes(schedconfig.SchemeGroupVersion, &configv1alpha1.InferaDensityArgs{})
		return nil
	}
	// The builders feed the plugin-args scheme when it is first built.
	kubeschedulerv1.SchemeBuilder.Register(external)
	schedconfig.SchemeBuilder.Register(internal)
	// scheme.Scheme was built when its package initialized.
	for _, add := range []func(*runtime.Scheme) error{external, internal} {
		if err := add(schedscheme.Scheme); err != nil {
			return fmt.Errorf("failed to register %s in kube-scheduler's scheme: %w", ArgsKind, err)
		}
	}
	if !schedconfigv1.GetPluginArgConversionScheme().Recognizes(ArgsGroupVersionKind) {
		return fmt.Errorf("failed to register %s: kube-scheduler's plugin-args scheme was built before RegisterArgs was called", ArgsKind)
	}
	return nil
}
