// Package apis tests the infera.io/v1alpha1 CRDs against a real
// kube-apiserver: samples, schema validation and defaults, the status
// subresource, printer columns through kubectl, and the generated clientset,
// informers, listers and apply configurations.
package apis
