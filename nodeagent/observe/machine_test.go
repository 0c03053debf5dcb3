package observe

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadMachineFakeSysfs(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		// 8 CPUs, CPU 7 offline: 2 sockets of 2 SMT-2 cores each.
		"devices/system/cpu/online":         "0-6\n",
		"devices/system/node/node0/cpulist": "0-1,4-5\n",
		"devices/system/node/node1/cpulist": "2-3,6-7\n",
		"devices/system/node/node2/cpulist": "\n", // memory-only node
		"devices/system/node/possible":      "0-2\n",
	}
	sib := map[int]string{0: "0,4", 1: "1,5", 2: "2,6", 3: "3,7", 4: "0,4", 5: "1,5", 6: "2,6"}
	llc := map[int]string{0: "0-1,4-5", 1: "0-1,4-5", 4: "0-1,4-5", 5: "0-1,4-5", 2: "2-3,6-7", 3: "2-3,6-7", 6: "2-3,6-7"}
	for c := 0; c <= 6; c++ {
		d := "devices/system/cpu/cpu" + strconv.Itoa(c)
		files[d+"/topology/thread_siblings_list"] = sib[c] + "\n"
		files[d+"/cache/index0/level"] = "1\n"
		files[d+"/cache/index0/type"] = "Data\n"
		files[d+"/cache/index0/shared_cpu_list"] = sib[c] + "\n"
		files[d+"/cache/index1/level"] = "1\n"
		files[d+"/cache/index1/type"] = "Instruction\n"
		files[d+"/cache/index1/shared_cpu_list"] = sib[c] + "\n"
		files[d+"/cache/index3/level"] = "3\n"
		files[d+"/cache/index3/type"] = "Unified\n"
		files[d+"/cache/index3/shared_cpu_list"] = llc[c] + "\n"
		if strings.HasPrefix(llc[c], "0") {
			files[d+"/cache/index3/id"] = "0\n"
		} else {
			files[d+"/cache/index3/id"] = "1\n"
		}
	}
	writeFiles(t, root, files)
	got, err := ReadMachine(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Machine{
		CPUs: "0-6", CPUCount: 7,
		// CPU 7 is offline, so core 3 has only CPU 3.
		SMTSiblings: [][]int{{0, 4}, {1, 5}, {2, 6}, {3}},
		LLCs:        []CPUGroup{{ID: 0, CPUs: "0-1,4-5"}, {ID: 1, CPUs: "2-3,6"}},
		NUMANodes:   []CPUGroup{{ID: 0, CPUs: "0-1,4-5"}, {ID: 1, CPUs: "2-3,6-7"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("machine mismatch (-want +got):\n%s", diff)
	}
}

func TestReadMachineWithoutTopology(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"devices/system/cpu/online": "0-2"})
	got, err := ReadMachine(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Machine{CPUs: "0-2", CPUCount: 3, SMTSiblings: [][]int{{0}, {1}, {2}}, LLCs: []CPUGroup{}, NUMANodes: []CPUGroup{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("machine mismatch (-want +got):\n%s", diff)
	}
	if _, err := ReadMachine(t.TempDir()); err == nil || !strings.Contains(err.Error(), "online") {
		t.Errorf("no online file: err %v; want one naming it", err)
	}
}

// TestReadMachineThisHost reads the real sysfs: every online CPU is in
// exactly one core, one LLC and, where NUMA is exposed, one node.
func TestReadMachineThisHost(t *testing.T) {
	if _, err := os.Stat("/sys/devices/system/cpu/online"); err != nil {
		t.Skipf("no sysfs here: %v", err)
	}
	m, err := ReadMachine("/sys")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, core := range m.SMTSiblings {
		n += len(core)
	}
	if n != m.CPUCount || m.CPUCount == 0 {
		t.Errorf("SMT siblings %v cover %d CPUs; want the %d online", m.SMTSiblings, n, m.CPUCount)
	}
	if len(m.LLCs) == 0 {
		t.Errorf("no LLC found in %+v", m)
	}
}

func TestReadPSI(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"pressure/cpu": "some avg10=1.25 avg60=0.50 avg300=0.10 total=987654\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"})
	got := ReadPSI(root)
	want := PSI{Available: true, Some: &PSIRecord{Avg10: 1.25, Avg60: 0.5, Avg300: 0.1, TotalUS: 987654}, Full: &PSIRecord{}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("PSI mismatch (-want +got):\n%s", diff)
	}
	if got := ReadPSI(t.TempDir()); got.Available || !strings.Contains(got.Reason, "no PSI") {
		t.Errorf("missing PSI = %+v; want unavailable with a reason", got)
	}
	writeFiles(t, root, map[string]string{"pressure/cpu": "some avg10=x\n"})
	if got := ReadPSI(root); got.Available || !strings.Contains(got.Reason, "avg10") {
		t.Errorf("malformed PSI = %+v; want unavailable naming the field", got)
	}
	// This host: PSI is there when /proc/pressure/cpu is.
	if _, err := os.Stat("/proc/pressure/cpu"); err == nil {
		if got := ReadPSI("/proc"); !got.Available || got.Some == nil {
			t.Errorf("this host's PSI = %+v; want available", got)
		}
	}
}
