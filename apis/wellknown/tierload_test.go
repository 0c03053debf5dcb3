package wellknown

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var ts = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

func sampleLoad() TierLoad {
	return TierLoad{
		V: TierLoadVersion, TS: ts, Gen: 42, Backend: BackendSCXLayered,
		AllocatableMilli: 8000, FencedMilli: 4000,
		Tiers: map[Tier]TierUsage{
			TierCritical: {Pods: 2, RequestMilli: 4000, LimitMilli: 4000},
			TierHigh:     {Pods: 1, RequestMilli: 500},
		},
	}
}

// The contract's example from DESIGN.md §3, compacted.
const designExample = `{"v":1,"ts":"2026-11-26T18:00:00Z","gen":42,"backend":"scx_layered","allocatableMilli":8000,"fencedMilli":4000,"tiers":{"critical":{"pods":2,"requestMilli":4000,"limitMilli":4000},"high":{"pods":1,"requestMilli":500,"limitMilli":0}}}`

func TestTierLoadMarshal(t *testing.T) {
	got, err := sampleLoad().Marshal()
	if err != nil {
		t.Fatalf("Marshal() = %v", err)
	}
	if got != designExample {
		t.Errorf("Marshal() =\n%s\nwant\n%s", got, designExample)
	}
}

func TestTierLoadMarshalNormalises(t *testing.T) {
	l := sampleLoad()
	l.V = 0 // Marshal always writes the current version
	l.TS = time.Date(2026, 11, 26, 19, 0, 0, 999_999_999, time.FixedZone("CET", 3600))
	l.Tiers = nil
	got, err := l.Marshal()
	if err != nil {
		t.Fatalf("Marshal() = %v", err)
	}
	want := `{"v":1,"ts":"2026-11-26T18:00:00Z","gen":42,"backend":"scx_layered","allocatableMilli":8000,"fencedMilli":4000,"tiers":{}}`
	if got != want {
		t.Errorf("Marshal() =\n%s\nwant\n%s", got, want)
	}
}

func TestTierLoadMarshalRejectsInvalid(t *testing.T) {
	tests := map[string]func(*TierLoad){
		"zero ts":           func(l *TierLoad) { l.TS = time.Time{} },
		"negative gen":      func(l *TierLoad) { l.Gen = -1 },
		"negative fenced":   func(l *TierLoad) { l.FencedMilli = -1 },
		"unknown tier":      func(l *TierLoad) { l.Tiers["gold"] = TierUsage{} },
		"negative pods":     func(l *TierLoad) { l.Tiers[TierLow] = TierUsage{Pods: -1} },
		"year out of range": func(l *TierLoad) { l.TS = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			l := sampleLoad()
			mutate(&l)
			if s, err := l.Marshal(); err == nil {
				t.Errorf("Marshal() = %s, want an error", s)
			}
		})
	}
}

func TestParseTierLoadRoundTrip(t *testing.T) {
	got, err := ParseTierLoad(designExample)
	if err != nil {
		t.Fatalf("ParseTierLoad() = %v", err)
	}
	if d := cmp.Diff(sampleLoad(), got); d != "" {
		t.Errorf("ParseTierLoad() mismatch (-want +got):\n%s", d)
	}
	again, err := got.Marshal()
	if err != nil || again != designExample {
		t.Errorf("Marshal(ParseTierLoad(x)) = %q, %v; want x", again, err)
	}
	// Whitespace around and inside the document is fine.
	pretty := "\n  " + strings.ReplaceAll(designExample, ",", ",\n   ") + "\n\t"
	if _, err := ParseTierLoad(pretty); err != nil {
		t.Errorf("ParseTierLoad(pretty) = %v", err)
	}
	// A sub-second timestamp from another writer is accepted as is.
	frac := strings.Replace(designExample, `18:00:00Z`, `19:00:00.5+01:00`, 1)
	l, err := ParseTierLoad(frac)
	if err != nil {
		t.Fatalf("ParseTierLoad(frac) = %v", err)
	}
	if !l.TS.Equal(ts.Add(500 * time.Millisecond)) {
		t.Errorf("ts = %s, want %s", l.TS, ts.Add(500*time.Millisecond))
	}
}

// TestTierLoadThreadsPerCore: the SMT field is optional (documents without
// it, as agents wrote them before, parse as before) and round-trips.
func TestTierLoadThreadsPerCore(t *testing.T) {
	l, err := ParseTierLoad(designExample)
	if err != nil || l.ThreadsPerCore != 0 {
		t.Fatalf("document without threadsPerCore: %d, %v; want 0, nil", l.ThreadsPerCore, err)
	}
	l.ThreadsPerCore = 2
	s, err := l.Marshal()
	if err != nil || !strings.Contains(s, `"threadsPerCore":2`) {
		t.Fatalf("Marshal() = %s, %v", s, err)
	}
	back, err := ParseTierLoad(s)
	if err != nil || back.ThreadsPerCore != 2 {
		t.Errorf("ParseTierLoad(Marshal()) threadsPerCore = %d, %v; want 2", back.ThreadsPerCore, err)
	}
}

func TestFenceCores(t *testing.T) {
	tests := []struct {
		milli     int64
		threads   int
		exclusive bool
		want      int64
	}{
		{0, 2, true, 0},
		{-5, 1, true, 0},
		{1, 1, true, 1},
		{1000, 1, true, 1},
		{1001, 1, true, 2},
		{1500, 2, true, 2}, // exclusive: the sibling stays idle
		{1500, 2, false, 1},
		{2001, 2, false, 2},
		{4000, 4, false, 1},
		{1500, 0, false, 2}, // unknown topology: no SMT
	}
	for _, tc := range tests {
		if got := FenceCores(tc.milli, tc.threads, tc.exclusive); got != tc.want {
			t.Errorf("FenceCores(%d, %d, %v) = %d, want %d", tc.milli, tc.threads, tc.exclusive, got, tc.want)
		}
	}
}

func TestParseTierLoadRejects(t *testing.T) {
	const prefix = "annotation infera.io/tier-load: "
	replace := func(old, new string) string {
		if !strings.Contains(designExample, old) {
			panic("test input does not contain " + old)
		}
		return strings.Replace(designExample, old, new, 1)
	}
	tests := map[string]struct {
		in      string
		wantErr string // substring after the prefix
	}{
		"empty":                 {in: "", wantErr: "invalid JSON"},
		"not JSON":              {in: "critical=2", wantErr: "invalid JSON"},
		"JSON null":             {in: "null", wantErr: "field v: unsupported version 0 (want 1)"},
		"array":                 {in: "[]", wantErr: "invalid JSON"},
		"missing version":       {in: replace(`"v":1,`, ""), wantErr: "field v: unsupported version 0 (want 1)"},
		"version 2":             {in: replace(`"v":1`, `"v":2`), wantErr: "field v: unsupported version 2 (want 1)"},
		"version as string":     {in: replace(`"v":1`, `"v":"1"`), wantErr: "invalid JSON"},
		"unknown field":         {in: replace(`"gen":42`, `"gen":42,"extra":true`), wantErr: `unknown field "extra"`},
		"unknown tier field":    {in: replace(`"pods":2`, `"pods":2,"cpu":1`), wantErr: `unknown field "cpu"`},
		"wrong-case field":      {in: replace(`"gen":42`, `"Gen":42`), wantErr: "field Gen: unknown field (keys are case-sensitive)"},
		"wrong-case tier field": {in: replace(`"pods":2`, `"Pods":2`), wantErr: "field tiers.critical.Pods: unknown field (keys are case-sensitive)"},
		"duplicate key":         {in: replace(`"gen":42`, `"gen":42,"gen":43`), wantErr: "field gen: duplicate key"},
		"missing ts":            {in: replace(`"ts":"2026-11-26T18:00:00Z",`, ""), wantErr: "field ts: missing"},
		"ts not RFC 3339":       {in: replace(`2026-11-26T18:00:00Z`, `yesterday`), wantErr: "invalid JSON"},
		"ts before 1970":        {in: replace(`2026-11-26`, `1969-12-31`), wantErr: "field ts: year 1969 is out of range [1970, 9999]"},
		"ts year 0 east of UTC": {in: replace(`2026-11-26T18:00:00Z`, `0000-01-01T00:00:00+01:00`), wantErr: "field ts: year -1 is out of range [1970, 9999]"},
		"negative gen":          {in: replace(`"gen":42`, `"gen":-1`), wantErr: "field gen: negative (-1)"},
		"threadsPerCore 9":      {in: replace(`"gen":42`, `"gen":42,"threadsPerCore":9`), wantErr: "field threadsPerCore: 9 is out of range [0, 8]"},
		"negative threads":      {in: replace(`"gen":42`, `"gen":42,"threadsPerCore":-1`), wantErr: "field threadsPerCore: -1 is out of range [0, 8]"},
		"negative allocatable":  {in: replace(`"allocatableMilli":8000`, `"allocatableMilli":-8000`), wantErr: "field allocatableMilli: negative (-8000)"},
		"negative fenced":       {in: replace(`"fencedMilli":4000`, `"fencedMilli":-1`), wantErr: "field fencedMilli: negative (-1)"},
		"negative pods":         {in: replace(`"pods":2`, `"pods":-2`), wantErr: "field tiers.critical: negative count or quantity"},
		"negative request":      {in: replace(`"requestMilli":500`, `"requestMilli":-500`), wantErr: "field tiers.high: negative count or quantity"},
		"pods beyond int32":     {in: replace(`"pods":2`, `"pods":2147483648`), wantErr: "invalid JSON"},
		"fractional milli":      {in: replace(`"fencedMilli":4000`, `"fencedMilli":4000.5`), wantErr: "invalid JSON"},
		"unknown tier":          {in: replace(`"high":`, `"gold":`), wantErr: `field tiers: unknown tier "gold"`},
		"padded tier name":      {in: replace(`"high":`, `" high":`), wantErr: `field tiers: unknown tier " high"`},
		"upper-case tier":       {in: replace(`"high":`, `"HIGH":`), wantErr: `field tiers: unknown tier "HIGH"`},
		"trailing document":     {in: designExample + `{}`, wantErr: "trailing data after the JSON document"},
		"trailing brace":        {in: designExample + `}`, wantErr: "trailing data after the JSON document"},
		"trailing bracket":      {in: designExample + " ]", wantErr: "trailing data after the JSON document"},
		"trailing garbage":      {in: designExample + "x", wantErr: "trailing data after the JSON document"},
		"truncated":             {in: designExample[:len(designExample)-1], wantErr: "invalid JSON"},
		"oversize":              {in: designExample + strings.Repeat(" ", 16<<10), wantErr: "more than the 16384 allowed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, err := ParseTierLoad(tc.in)
			if err == nil {
				t.Fatalf("ParseTierLoad() = %+v, want an error containing %q", l, tc.wantErr)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.wantErr) {
				t.Errorf("ParseTierLoad() error = %q, want %q…%q", msg, prefix, tc.wantErr)
			}
			if d := cmp.Diff(TierLoad{}, l); d != "" {
				t.Errorf("a rejected value must parse to the zero TierLoad (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseTierLoadAtSizeLimit(t *testing.T) {
	s := designExample + strings.Repeat(" ", maxTierLoadBytes-len(designExample))
	if _, err := ParseTierLoad(s); err != nil {
		t.Errorf("a %d-byte value must parse: %v", len(s), err)
	}
}

func TestTierLoadCheckFresh(t *testing.T) {
	l := sampleLoad()
	tests := map[string]struct {
		now       time.Time
		stale     bool
		wantError string
	}{
		"just written":            {now: ts},
		"at the heartbeat":        {now: ts.Add(TierLoadHeartbeat)},
		"exactly the max age":     {now: ts.Add(TierLoadMaxAge)},
		"one second past max age": {now: ts.Add(TierLoadMaxAge + time.Second), stale: true, wantError: "tier-load is stale: confirmed 3m1s ago, more than 3m0s"},
		"writer clock 30 s ahead": {now: ts.Add(-30 * time.Second)},
		"writer clock 31 s ahead": {now: ts.Add(-31 * time.Second), stale: true, wantError: "tier-load is stale: dated 31s in the future"},
		"far past":                {now: ts.Add(100 * 365 * 24 * time.Hour), stale: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := l.CheckFresh(tc.now, TierLoadMaxAge)
			if got := errors.Is(err, ErrTierLoadStale); got != tc.stale {
				t.Fatalf("CheckFresh() = %v, stale=%v want %v", err, got, tc.stale)
			}
			if tc.wantError != "" && err.Error() != tc.wantError {
				t.Errorf("CheckFresh() = %q, want %q", err, tc.wantError)
			}
		})
	}
	if got := l.Age(ts.Add(90 * time.Second)); got != 90*time.Second {
		t.Errorf("Age() = %s, want 1m30s", got)
	}
}

func TestTierLoadSameContentAndUsage(t *testing.T) {
	a, b := sampleLoad(), sampleLoad()
	b.TS = b.TS.Add(time.Minute)
	if !a.SameContent(b) {
		t.Error("documents differing only in ts must have the same content")
	}
	b.Gen++
	if a.SameContent(b) {
		t.Error("a different gen is a content change")
	}
	c := sampleLoad()
	c.Tiers[TierLow] = TierUsage{}
	if a.SameContent(c) {
		t.Error("an added tier entry is a content change")
	}
	if got := a.Usage(TierCritical); got != (TierUsage{Pods: 2, RequestMilli: 4000, LimitMilli: 4000}) {
		t.Errorf("Usage(critical) = %+v", got)
	}
	if got := a.Usage(TierBackground); got != (TierUsage{}) {
		t.Errorf("Usage(background) = %+v, want zero", got)
	}
}

func TestTierLoadSameContentNormalises(t *testing.T) {
	parsed, err := ParseTierLoad(`{"v":1,"ts":"2026-11-26T18:00:00Z","gen":3,"backend":"cgroup","allocatableMilli":1000,"fencedMilli":0}`)
	if err != nil {
		t.Fatal(err)
	}
	// What a writer builds before Marshal fills in V and the empty map.
	built := TierLoad{TS: ts.Add(time.Minute), Gen: 3, Backend: BackendCgroup, AllocatableMilli: 1000, Tiers: map[Tier]TierUsage{}}
	if !parsed.SameContent(built) || !built.SameContent(parsed) {
		t.Error("absent tiers and an unset V must not count as a content change")
	}
}
