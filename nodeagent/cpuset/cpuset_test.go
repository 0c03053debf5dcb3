package cpuset

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAndString(t *testing.T) {
	cases := map[string]struct {
		in      string
		sorted  []int
		str     string
		wantErr bool
	}{
		"empty":         {in: "", sorted: []int{}, str: ""},
		"single":        {in: "3", sorted: []int{3}, str: "3"},
		"range":         {in: "0-3", sorted: []int{0, 1, 2, 3}, str: "0-3"},
		"mixed, blanks": {in: " 8,0-2, 10-11\n", sorted: []int{0, 1, 2, 8, 10, 11}, str: "0-2,8,10-11"},
		"overlap":       {in: "0-2,1-3", sorted: []int{0, 1, 2, 3}, str: "0-3"},
		"reversed":      {in: "3-1", wantErr: true},
		"negative":      {in: "-1", wantErr: true},
		"garbage":       {in: "a-b", wantErr: true},
		"huge range":    {in: "0-1000000", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Parse(tc.in)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Parse(%q) = %v, want an error", tc.in, s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.sorted, s.Sorted()); d != "" {
				t.Errorf("Sorted (-want +got):\n%s", d)
			}
			if s.String() != tc.str {
				t.Errorf("String = %q, want %q", s.String(), tc.str)
			}
		})
	}
}

func TestSetAlgebra(t *testing.T) {
	all, _ := Parse("0-7")
	fence, _ := Parse("6-7")
	if got := all.Minus(fence).String(); got != "0-5" {
		t.Errorf("Minus = %q", got)
	}
	if got := all.Minus(fence).Union(fence).String(); got != "0-7" {
		t.Errorf("Union = %q", got)
	}
	if !fence.SubsetOf(all) || all.SubsetOf(fence) {
		t.Error("SubsetOf is wrong")
	}
}
