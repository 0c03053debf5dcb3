// Command scheduler is the placement benchmark of the InferaDensity plugin
// (issue 7): a real kube-apiserver and etcd (test/envtest), a real
// kube-scheduler run in-process from config/scheduler/scheduler-config.yaml
// with both of its profiles, and simulated nodes — Node objects with
// capacity, resident pods bound to them and an infera.io/tier-load
// annotation that describes those pods the way an agent would. Each arm
// creates the same mixed-tier workload as a backlog of pending pods for one
// profile — the stock profile (default-scheduler) or the infera profile —
// then starts the scheduler and measures how it drains the backlog:
// throughput (pods/s), scheduling latency (kube-scheduler's attempt and
// algorithm histograms, p50/p99), how long pods of the burst wait, and
// placement quality judged with the simulation's ground truth: critical
// pods placed where they cannot be fenced, how many nodes carry the batch
// share, and how much protected load high pods share their cores with.
// Rounds alternate which arm goes first.
//
//	go run ./test/bench/scheduler -out docs/bench/scheduler.json
//
// It is a measurement, never an assertion: it prints the numbers, the
// command and the machine and exits 0 unless the setup itself fails.
package main
