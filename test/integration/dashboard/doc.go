// Package dashboard tests infera-gateway's web dashboard in a real browser:
// Debian's chromium, headless, driven by chromedp, against the gateway on a
// real kube-apiserver (envtest) with RBAC, as ServiceAccounts holding the
// shipped roles. The tests sign in, drill down from the fleet to a pod,
// switch safe mode on and off with a reason and find the audit entry, and
// check what a denied caller sees; they write a screenshot of each view.
// They run under `make test-dashboard` (TEMPER_TEST_DASHBOARD=1) and skip
// otherwise.
package dashboard
