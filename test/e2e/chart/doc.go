// Package chart installs charts/temper with `helm install --wait` on a real
// control plane built from source (kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler) with kwok playing the kubelets of
// fake nodes, then upgrades and uninstalls it. It is slow for the unit
// suite, so it runs only under `make test-chart` (TEMPER_TEST_CHART=1).
package chart
