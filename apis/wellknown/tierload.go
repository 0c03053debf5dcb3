package wellknown

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
func (l TierLoad) SameContent(o TierLoad) bool {
	l.TS, o.TS = time.Time{}, time.Time{}
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
	if dec.More() {
		return TierLoad{}, fmt.Errorf("annotation %s: trailing data after the JSON document", TierLoadAnnotation)
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
	if l.Gen < 0 {
		return field("gen", "negative (%d)", l.Gen)
	}
	if l.AllocatableMilli < 0 {
		return field("allocatableMilli", "negative (%d)", l.AllocatableMilli)
	}
	if l.FencedMilli < 0 {
		return field("fencedMilli", "negative (%d)", l.FencedMilli)
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
