package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// svg plots p50, p99 and p99.9 request latency against the burner count,
// one panel per burner variant, one colour per arm, on a log scale.
func (r *result) svg() string {
	const (
		panelW, panelH = 420.0, 300.0
		left, top      = 70.0, 50.0
		gap            = 90.0
	)
	armColors := []string{"#c0392b", "#2471a3", "#229954", "#b9770e", "#7d3c98", "#566573"}
	variants := variantsOf(r.Arms["stock"])
	width := left + float64(len(variants))*(panelW+gap)
	height := top + panelH + 60 + 20*float64(len(r.armOrder)+1)
	// The y range over every value plotted, in decades.
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, rows := range r.Arms {
		for _, x := range rows {
			for _, v := range []float64{x.P50, x.P99, x.P999} {
				if v > 0 {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo, hi = 1, 10
	}
	dlo, dhi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&sb, `<text x="%.0f" y="20" font-size="14" font-weight="bold">memcached request latency vs CPU burners (%s, %d CPUs, cgroup %s)</text>`+"\n",
		left, html.EscapeString(r.Machine.Kernel), r.Machine.CPUs, r.Machine.CgroupVersion)
	dashes := map[string]string{"p50": "", "p99": "6,3", "p99.9": "2,3"}
	for pi, v := range variants {
		x0 := left + float64(pi)*(panelW+gap)
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" font-weight="bold">%s burner pods</text>`+"\n", x0, top-10, html.EscapeString(v))
		fmt.Fprintf(&sb, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#444"/>`+"\n", x0, top, panelW, panelH)
		y := func(us float64) float64 {
			us = math.Max(us, math.Pow(10, dlo))
			return top + panelH - (math.Log10(us)-dlo)/(dhi-dlo)*panelH
		}
		for d := dlo; d <= dhi; d++ {
			yy := y(math.Pow(10, d))
			fmt.Fprintf(&sb, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, x0+panelW, yy, yy)
			fmt.Fprintf(&sb, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-5, yy+4, usLabel(math.Pow(10, d)))
		}
		var ladder []int
		for _, s := range r.Arms["stock"] {
			if s.Variant == v {
				ladder = append(ladder, s.Burners)
			}
		}
		xAt := func(i int) float64 {
			if len(ladder) == 1 {
				return x0 + panelW/2
			}
			return x0 + 30 + float64(i)*(panelW-60)/float64(len(ladder)-1)
		}
		for i, n := range ladder {
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", xAt(i), top+panelH+16, n)
		}
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" text-anchor="middle">burner processes</text>`+"\n", x0+panelW/2, top+panelH+34)
		for ai, arm := range r.armOrder {
			color := armColors[ai%len(armColors)]
			for _, q := range []string{"p50", "p99", "p99.9"} {
				var pts []string
				for i, n := range ladder {
					x := findRow(r.Arms[arm], v, n)
					if x == nil {
						continue
					}
					val := map[string]float64{"p50": x.P50, "p99": x.P99, "p99.9": x.P999}[q]
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", xAt(i), y(val)))
					fmt.Fprintf(&sb, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s %s %d burners: %.0f µs</title></circle>`+"\n", xAt(i), y(val), color, arm, q, n, val)
				}
				dash := ""
				if dashes[q] != "" {
					dash = fmt.Sprintf(` stroke-dasharray="%s"`, dashes[q])
				}
				fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.8"%s points="%s"/>`+"\n", color, dash, strings.Join(pts, " "))
			}
		}
	}
	fmt.Fprintf(&sb, `<text x="12" y="%.0f" transform="rotate(-90 12 %.0f)" text-anchor="middle">latency (log scale)</text>`+"\n", top+panelH/2, top+panelH/2)
	ly := top + panelH + 55
	for ai, arm := range r.armOrder {
		color := armColors[ai%len(armColors)]
		fmt.Fprintf(&sb, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			left, left+30, ly-4, ly-4, color, left+38, ly, html.EscapeString(arm))
		ly += 20
	}
	fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f">solid p50 · dashed p99 · dotted p99.9; %.0f req/s open loop</text>`+"\n", left, ly, r.Config.RatePerSec)
	sb.WriteString("</svg>\n")
	return sb.String()
}

func usLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.0f s", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.0f ms", v/1e3)
	default:
		return fmt.Sprintf("%.0f µs", v)
	}
}
