package telemetry

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// processCollector reports the agent's own process, under the same names
// and meanings as client_golang's process collector (agent_process_*), at a
// fraction of its cost: that collector parsed /proc/self/stat, the whole of
// /proc/stat (for the boot time behind the start time, on every scrape),
// /proc/self/limits and every field of /proc/self/net/netstat, about a
// fifth of a scrape's CPU at 110 pods. Here CPU time and limits come from
// getrusage and getrlimit, memory from the few numbers of
// /proc/self/statm, the start time once, and the network counters from the
// two fields of netstat that are reported, each file kept open between
// scrapes.
type processCollector struct {
	cpu, openFDs, maxFDs, vsize, maxVsize, rss, start, rx, tx *family
	fams                                                      []*family

	startTime float64 // 0: unknown (not reported)
	pageSize  float64

	mu    sync.Mutex
	files fileReader
	proc  string // /proc/self
}

func newProcessCollector(procRoot string) *processCollector {
	gauge := func(name, help string) *family { return newFamily("agent_process_"+name, help, "gauge") }
	counter := func(name, help string) *family { return newFamily("agent_process_"+name, help, "counter") }
	c := &processCollector{
		cpu:      counter("cpu_seconds_total", "User and system CPU time the agent process has used, in seconds."),
		openFDs:  gauge("open_fds", "File descriptors the agent process has open."),
		maxFDs:   gauge("max_fds", "The agent process's limit on open file descriptors."),
		vsize:    gauge("virtual_memory_bytes", "Virtual memory size of the agent process, in bytes."),
		maxVsize: gauge("virtual_memory_max_bytes", "The agent process's limit on virtual memory, in bytes."),
		rss:      gauge("resident_memory_bytes", "Resident memory of the agent process, in bytes."),
		start:    gauge("start_time_seconds", "When the agent process started, in seconds since the Unix epoch."),
		rx:       counter("network_receive_bytes_total", "Bytes received in the agent's network namespace (IpExt InOctets)."),
		tx:       counter("network_transmit_bytes_total", "Bytes sent from the agent's network namespace (IpExt OutOctets)."),
		pageSize: float64(os.Getpagesize()),
		proc:     procRoot + "/self",
		files:    newFileReader(),
	}
	c.fams = []*family{c.cpu, c.openFDs, c.maxFDs, c.vsize, c.maxVsize, c.rss, c.start, c.rx, c.tx}
	if fs, err := procfs.NewFS(procRoot); err == nil {
		if p, err := fs.Self(); err == nil {
			if st, err := p.Stat(); err == nil {
				if t, err := st.StartTime(); err == nil {
					c.startTime = t
				}
			}
		}
	}
	return c
}

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch, c.fams...) }

func (c *processCollector) Collect(ch chan<- prometheus.Metric) { c.collect(sink{ch: ch}) }

func (c *processCollector) collect(s sink) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.counter(c.cpu, float64(ru.Utime.Nano()+ru.Stime.Nano())/1e9)
	} else {
		s.invalid(c.cpu, err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		s.gauge(c.maxFDs, float64(lim.Cur))
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err == nil {
		s.gauge(c.maxVsize, float64(lim.Cur))
	}
	if c.startTime > 0 {
		s.gauge(c.start, c.startTime)
	}
	if n, err := countFDs(c.proc + "/fd"); err == nil {
		s.gauge(c.openFDs, float64(n))
	} else {
		s.invalid(c.openFDs, err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.files.Begin()
	defer c.files.End()
	if b, ok := c.files.read(c.proc, "statm"); ok {
		f := bytes.Fields(b)
		if len(f) >= 2 {
			size, err1 := strconv.ParseUint(string(f[0]), 10, 64)
			res, err2 := strconv.ParseUint(string(f[1]), 10, 64)
			if err1 == nil && err2 == nil {
				s.gauge(c.vsize, float64(size)*c.pageSize)
				s.gauge(c.rss, float64(res)*c.pageSize)
			}
		}
	}
	if b, ok := c.files.read(c.proc+"/net", "netstat"); ok {
		if in, out, ok := ipExtOctets(b); ok {
			s.counter(c.rx, in)
			s.counter(c.tx, out)
		}
	}
}

// countFDs counts the entries of a /proc/<pid>/fd directory. Since Linux
// 6.2 the directory's size is that count, one stat instead of listing
// every descriptor (the agent keeps a few hundred cgroup files open); older
// kernels report 0, and the directory is listed.
func countFDs(dir string) (int, error) {
	if st, err := os.Stat(dir); err == nil && st.Size() > 0 {
		return int(st.Size()), nil
	}
	return countDir(dir)
}

// countDir counts the entries of dir (without . and ..).
func countDir(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

// ipExtOctets reads InOctets and OutOctets from the IpExt lines of
// /proc/<pid>/net/netstat: a header line of field names, then a line of
// values in the same order.
func ipExtOctets(b []byte) (in, out float64, ok bool) {
	var header []byte
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if !bytes.HasPrefix(line, []byte("IpExt:")) {
			continue
		}
		if header == nil {
			header = line
			continue
		}
		names, values := bytes.Fields(header[len("IpExt:"):]), bytes.Fields(line[len("IpExt:"):])
		var gotIn, gotOut bool
		for i, n := range names {
			if i >= len(values) {
				break
			}
			switch string(n) {
			case "InOctets":
				v, err := strconv.ParseFloat(string(values[i]), 64)
				in, gotIn = v, err == nil
			case "OutOctets":
				v, err := strconv.ParseFloat(string(values[i]), 64)
				out, gotOut = v, err == nil
			}
		}
		return in, out, gotIn && gotOut
	}
	return 0, 0, false
}
