// Package controllers wires Temper's reconcilers into a controller-runtime
// manager: SetupControllers builds each one from explicit options, in a
// fixed list, and names the one that failed. It holds no reconcile logic of
// its own and no init() registration.
package controllers
