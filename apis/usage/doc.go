// Package usage summarises the CPU usage samples the node agents take and
// turns them into request suggestions: quantiles of a series, and the
// rightsizing rule (p95 × headroom, rounded up, with a floor) that the
// gateway's rightsizer and inferactl share. It is pure: no client, no
// files, no clock.
package usage
