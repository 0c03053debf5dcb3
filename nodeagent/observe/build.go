package observe

import (
	"math"
	"time"

	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/procscan"
)

// Parts are everything a snapshot is assembled from.
type Parts struct {
	Node        string
	Time        time.Time
	Machine     Machine
	Enforcement Enforcement
	Promise     lint.Promise
	// Targets are the pods of the last tick (for the pod count per layer).
	Targets []procscan.Target
	// Sample is the last sample; nil before the first tick.
	Sample   *procscan.Sample
	Verdicts []lint.Verdict
	PSI      PSI
	Overhead Overhead
}

// Assemble builds a snapshot from its parts. It is pure: equal parts give
// an equal snapshot.
func Assemble(p Parts) Snapshot {
	s := Snapshot{
		SchemaVersion: SchemaVersion,
		Node:          p.Node,
		Time:          p.Time.UTC(),
		Machine:       p.Machine,
		Enforcement:   p.Enforcement,
		Layers:        []Layer{},
		ReserveCPUs:   p.Promise.Reserve.String(),
		TopThreads:    []Thread{},
		CPUs:          []CPU{},
		PSI:           p.PSI,
		Lint:          p.Verdicts,
		Sample:        SampleInfo{Capped: []Cap{}},
		Overhead:      p.Overhead,
	}
	if s.Lint == nil {
		s.Lint = []lint.Verdict{}
	}
	lm := LintMachine(p.Machine)
	allowed := lint.AllowedCPUs(p.Promise, lm)
	for i, l := range p.Promise.Layers {
		out := Layer{Name: l.Name, Kind: l.Kind, Tiers: []string{}, CPUs: allowed[i].String()}
		for _, t := range l.Tiers {
			out.Tiers = append(out.Tiers, string(t))
		}
		for _, t := range p.Targets {
			if j, ok := lint.LayerOf(p.Promise, t.Tier); ok && j == i {
				out.Pods++
			}
		}
		s.Layers = append(s.Layers, out)
	}
	if p.Sample == nil {
		return s
	}
	smp := p.Sample
	for _, t := range smp.Threads {
		if i, ok := lint.LayerOf(p.Promise, t.Tier); ok {
			s.Layers[i].MilliCPU += t.MilliCPU
			s.Layers[i].Threads++
		}
	}
	for i := range s.Layers {
		if n := len(allowed[i]); n > 0 {
			s.Layers[i].Util = round3(s.Layers[i].MilliCPU / (1000 * float64(n)))
		}
		s.Layers[i].MilliCPU = round1(s.Layers[i].MilliCPU)
	}
	for _, t := range smp.Top {
		layer := ""
		if i, ok := lint.LayerOf(p.Promise, t.Tier); ok {
			layer = p.Promise.Layers[i].Name
		}
		s.TopThreads = append(s.TopThreads, Thread{TID: t.TID, PID: t.PID, Comm: t.Comm, Pod: string(t.Pod), Tier: string(t.Tier), Layer: layer, CPU: t.CPU, MilliCPU: round1(t.MilliCPU)})
	}
	for _, c := range smp.CPUs {
		s.CPUs = append(s.CPUs, CPU{CPU: c.CPU, MilliCPU: round1(c.MilliCPU)})
	}
	s.Sample = SampleInfo{
		Time: smp.Time.UTC(), IntervalSeconds: smp.Interval.Seconds(),
		Pods: smp.Pods, Processes: smp.Processes, ProcessesIdle: smp.ProcessesIdle,
		ThreadsRead: smp.ThreadsRead, ThreadsBusy: len(smp.Threads), Capped: []Cap{},
		Vanished: smp.Vanished, Errors: smp.Errors, FirstError: smp.FirstError,
	}
	for _, c := range smp.Capped {
		s.Sample.Capped = append(s.Sample.Capped, Cap{Pod: string(c.Pod), Threads: c.Threads, Read: c.Read, Idle: c.Idle, NodeCap: c.Node})
	}
	return s
}

// LintMachine is the topology the linter needs from a machine shape.
func LintMachine(m Machine) lint.Machine {
	var lm lint.Machine
	for _, core := range m.SMTSiblings {
		lm.CPUs = append(lm.CPUs, core...)
		lm.Cores = append(lm.Cores, core)
	}
	return lm
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }
