package wellknown

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// TierLoadVersion is the version of the TierLoad document this package writes
// and the only one it reads.
const TierLoadVersion = 1

// TierLoadMaxAge is how old a TierLoad may be before readers treat it as
// absent (DESIGN.md §3). The agent confirms it at least every
// TierLoadHeartbeat.
const (
	TierLoadMaxAge    = 180 * time.Second
	TierLoadHeartbeat = 60 * time.Second
)

// maxTierLoadBytes bounds what ParseTierLoad reads: a real document is a few
// hundred bytes, and an annotation value this large is hostile or broken.
const maxTierLoadBytes = 16 << 10

// ErrTierLoadStale is returned by TierLoad.CheckFresh for a document older
// than the maximum age (or dated in the future beyond the allowed skew).
var ErrTierLoadStale = errors.New("tier-load is stale")

// TierUsage is one tier's share of a node in a TierLoad.
type TierUsage struct {
	Pods         int32 `json:"pods"`
	RequestMilli int64 `json:"requestMilli"`
	LimitMilli   int64 `json:"limitMilli"`
}

// TierLoad is the infera.io/tier-load document, version 1.
type TierLoad struct {
	// V is the document version, TierLoadVersion.
	V int `json:"v"`
	// TS is when the agent last confirmed the content (RFC 3339, seconds).
	TS time.Time `json:"ts"`
	// Gen rises with every applied enforcement change.
	Gen int64 `json:"gen"`
	// Backend is the enforcement backend (Backend* constants).
	Backend string `json:"backend"`
	// AllocatableMilli is the node's allocatable CPU.
	AllocatableMilli int64 `json:"allocatableMilli"`
	// FencedMilli is the CPU fenced for the critical tier (whole cores).
	FencedMilli int64 `json:"fencedMilli"`
	// Tiers holds the usage of each non-empty tier, keyed by tier name.
	Tiers map[Tier]TierUsage `json:"tiers"`
	// ThreadsPerCore is the number of SMT threads of the physical cores the
	// critical fence is made of (the core holding the lowest CPU id, as
	// scx_layered counts). Omitted (0) or 1 means no SMT; documents without
	// it read as before. On an SMT node the fence takes whole physical cores
	// (FenceCores), so readers must not count it in logical CPUs.
	ThreadsPerCore int `json:"threadsPerCore,omitempty"`
}

// Marshal renders the compact annotation value. Timestamps are truncated to
// seconds so equal content renders to equal bytes.
func (l TierLoad) Marshal() (string, error) {
	l.V = TierLoadVersion
	l.TS = l.TS.UTC().Truncate(time.Second)
	if l.Tiers == nil {
		l.Tiers = map[Tier]TierUsage{}
	}
	if err := l.validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("failed to marshal tier-load: %w", err)
	}
	return string(b), nil
}

// SameContent reports whether two documents differ only in their timestamp,
// which is how a writer decides between a content patch and a heartbeat.
// Like Marshal, it ignores V (always the current version when rendered) and
// treats nil Tiers as empty.
func (l TierLoad) SameContent(o TierLoad) bool {
	l.TS, o.TS = time.Time{}, time.Time{}
	l.V, o.V = TierLoadVersion, TierLoadVersion
	if l.Tiers == nil {
		l.Tiers = map[Tier]TierUsage{}
	}
	if o.Tiers == nil {
		o.Tiers = map[Tier]TierUsage{}
	}
	a, errA := json.Marshal(l)
	b, errB := json.Marshal(o)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// ParseTierLoad parses and validates an infera.io/tier-load value. Errors
// name the annotation and the offending field; readers treat a value that
// fails to parse as absent.
func ParseTierLoad(s string) (TierLoad, error) {
	var l TierLoad
	if len(s) > maxTierLoadBytes {
		return l, fmt.Errorf("annotation %s: value is %d bytes, more than the %d allowed", TierLoadAnnotation, len(s), maxTierLoadBytes)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return TierLoad{}, fmt.Errorf("annotation %s: invalid JSON: %w", TierLoadAnnotation, err)
	}
	// dec.More would miss a stray '}' or ']': only the end of input will do.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return TierLoad{}, fmt.Errorf("annotation %s: trailing data after the JSON document", TierLoadAnnotation)
	}
	// encoding/json matches field names case-insensitively and keeps the
	// last of duplicate keys; the contract spells each key once, exactly.
	if err := checkTierLoadKeys([]byte(s)); err != nil {
		return TierLoad{}, fmt.Errorf("annotation %s: %w", TierLoadAnnotation, err)
	}
	if l.V != TierLoadVersion {
		return TierLoad{}, fmt.Errorf("annotation %s: field v: unsupported version %d (want %d)", TierLoadAnnotation, l.V, TierLoadVersion)
	}
	if err := l.validate(); err != nil {
		return TierLoad{}, err
	}
	return l, nil
}

func (l TierLoad) validate() error {
	field := func(name, msg string, args ...any) error {
		return fmt.Errorf("annotation %s: field %s: %s", TierLoadAnnotation, name, fmt.Sprintf(msg, args...))
	}
	if l.TS.IsZero() {
		return field("ts", "missing")
	}
	// An agent writes its current time; a date before the epoch or one
	// whose UTC form has no four-digit year cannot be re-rendered.
	if y := l.TS.UTC().Year(); y < 1970 || y > 9999 {
		return field("ts", "year %d is out of range [1970, 9999]", y)
	}
	if l.Gen < 0 {
		return field("gen", "negative (%d)", l.Gen)
	}
	if l.AllocatableMilli < 0 {
		return field("allocatableMilli", "negative (%d)", l.AllocatableMilli)
	}
	if l.FencedMilli < 0 {
		return field("fencedMilli", "negative (%d)", l.FencedMilli)
	}
	if l.ThreadsPerCore < 0 || l.ThreadsPerCore > MaxThreadsPerCore {
		return field("threadsPerCore", "%d is out of range [0, %d]", l.ThreadsPerCore, MaxThreadsPerCore)
	}
	for t, u := range l.Tiers {
		if !t.Valid() {
			return field("tiers", "unknown tier %q", string(t))
		}
		if u.Pods < 0 || u.RequestMilli < 0 || u.LimitMilli < 0 {
			return field("tiers."+string(t), "negative count or quantity")
		}
	}
	return nil
}

// Age is how long ago the document was confirmed.
func (l TierLoad) Age(now time.Time) time.Duration { return now.Sub(l.TS) }

// maxClockSkew tolerates agents whose clock runs slightly ahead.
const maxClockSkew = 30 * time.Second

// CheckFresh returns ErrTierLoadStale (wrapped, with the age) if the
// document is older than maxAge at now, or dated implausibly far ahead.
func (l TierLoad) CheckFresh(now time.Time, maxAge time.Duration) error {
	age := l.Age(now)
	if age > maxAge {
		return fmt.Errorf("%w: confirmed %s ago, more than %s", ErrTierLoadStale, age.Truncate(time.Second), maxAge)
	}
	if age < -maxClockSkew {
		return fmt.Errorf("%w: dated %s in the future", ErrTierLoadStale, (-age).Truncate(time.Second))
	}
	return nil
}

// Usage returns the usage of tier t (zero when the tier is absent).
func (l TierLoad) Usage(t Tier) TierUsage { return l.Tiers[t] }

// tierLoadFields and tierUsageFields are the exact keys of the document and
// of one tier's entry.
var (
	tierLoadFields  = []string{"v", "ts", "gen", "backend", "allocatableMilli", "fencedMilli", "tiers", "threadsPerCore"}
	tierUsageFields = []string{"pods", "requestMilli", "limitMilli"}
)

// checkTierLoadKeys walks a document that already decoded into TierLoad and
// rejects keys that differ from the contract's spelling, and duplicate keys.
func checkTierLoadKeys(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	return walkTierLoadKeys(dec, "")
}

func walkTierLoadKeys(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	switch tok {
	case json.Delim('{'):
		seen := make(map[string]bool)
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("invalid JSON: %w", err)
			}
			key, _ := kt.(string)
			child := key
			if path != "" {
				child = path + "." + key
			}
			if seen[key] {
				return fmt.Errorf("field %s: duplicate key", child)
			}
			seen[key] = true
			if !tierLoadKeyAllowed(path, key) {
				return fmt.Errorf("field %s: unknown field (keys are case-sensitive)", child)
			}
			if err := walkTierLoadKeys(dec, child); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
	case json.Delim('['):
		for dec.More() {
			if err := walkTierLoadKeys(dec, path+"[]"); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil {
			return fmt.Errorf("invalid JSON: %w", err)
		}
	}
	return nil
}

func tierLoadKeyAllowed(path, key string) bool {
	switch {
	case path == "":
		return slices.Contains(tierLoadFields, key)
	case path == "tiers":
		return true // tier names are checked by validate
	case strings.HasPrefix(path, "tiers.") && !strings.Contains(path[len("tiers."):], "."):
		return slices.Contains(tierUsageFields, key)
	}
	return false
}
