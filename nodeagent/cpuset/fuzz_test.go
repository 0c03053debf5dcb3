package cpuset

import (
	"maps"
	"testing"
)

// FuzzParse feeds arbitrary CPU lists (cpuset files, the kubelet's CPU
// manager state) to Parse: whatever it accepts must format with String and
// parse back to the same set. Seeds run with every `go test`; `make fuzz`
// runs it for a while.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "0", "0-3", "0-2,5", " 1,3-4\n", "3-1", "-1", "0-65536", "a", "1,,2", "0-1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := Parse(s)
		if err != nil {
			if set != nil {
				t.Fatalf("Parse(%q) returned a set with error %v", s, err)
			}
			return
		}
		back, err := Parse(set.String())
		if err != nil {
			t.Fatalf("Parse(String()) of %q = %v", s, err)
		}
		if !maps.Equal(set, back) {
			t.Fatalf("Parse(%q) = %v, round trip %v", s, set, back)
		}
	})
}
