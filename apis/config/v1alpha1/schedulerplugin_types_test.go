package v1alpha1

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

func TestInferaDensityArgsDefault(t *testing.T) {
	var got InferaDensityArgs
	got.Default()
	reserve := int64(2000)
	want := InferaDensityArgs{
		TierLoadMaxAge:    &metav1.Duration{Duration: 180 * time.Second},
		FenceReserveMilli: &reserve,
		PriorityMapping:   &inferav1alpha1.PriorityMapping{Critical: 1_000_000, High: 100_000, Normal: 0, Low: -100},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Default() mismatch (-want +got):\n%s", d)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("defaulted args are invalid: %v", err)
	}

	// Set fields are kept.
	custom := int64(2500)
	set := InferaDensityArgs{FenceReserveMilli: &custom, TierLoadMaxAge: &metav1.Duration{Duration: time.Minute}}
	set.Default()
	if *set.FenceReserveMilli != 2500 || set.TierLoadMaxAge.Duration != time.Minute {
		t.Errorf("Default() overwrote set fields: reserve=%d maxAge=%s", *set.FenceReserveMilli, set.TierLoadMaxAge.Duration)
	}
}

func TestInferaDensityArgsValidate(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	dur := func(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
	tests := map[string]struct {
		args    InferaDensityArgs
		wantErr string // substring; "" means valid
	}{
		"zero reserve is valid":     {args: InferaDensityArgs{FenceReserveMilli: i64(0)}},
		"one hour max age is valid": {args: InferaDensityArgs{TierLoadMaxAge: dur(time.Hour)}},
		"negative reserve": {
			args:    InferaDensityArgs{FenceReserveMilli: i64(-1)},
			wantErr: "fenceReserveMilli: Invalid value: -1",
		},
		"absurd reserve": {
			args:    InferaDensityArgs{FenceReserveMilli: i64(1_000_000_001)},
			wantErr: "fenceReserveMilli: Invalid value",
		},
		"zero max age": {
			args:    InferaDensityArgs{TierLoadMaxAge: dur(0)},
			wantErr: "tierLoadMaxAge: Invalid value",
		},
		"max age above one hour": {
			args:    InferaDensityArgs{TierLoadMaxAge: dur(time.Hour + time.Second)},
			wantErr: "tierLoadMaxAge: Invalid value",
		},
		"critical in the system range": {
			args:    InferaDensityArgs{PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 2_000_000_000, High: 10, Normal: 0, Low: -1}},
			wantErr: "priorityMapping.critical",
		},
		"partial mapping leaves high at zero": {
			args:    InferaDensityArgs{PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 500_000}},
			wantErr: "priorityMapping.normal",
		},
		"high not below critical": {
			args:    InferaDensityArgs{PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 100, High: 100, Normal: 0, Low: -1}},
			wantErr: "priorityMapping.high",
		},
		"low not below normal": {
			args:    InferaDensityArgs{PriorityMapping: &inferav1alpha1.PriorityMapping{Critical: 100, High: 10, Normal: 0, Low: 0}},
			wantErr: "priorityMapping.low",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.args.Default()
			err := tc.args.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Errorf("Validate() = nil, want an error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("Validate() = %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}

	if err := (&InferaDensityArgs{}).Validate(); err == nil {
		t.Error("Validate() of undefaulted args = nil, want required-field errors")
	}
}
