package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The bench re-runs its own binary as the load generator and the wakeup
// probe, so that each is a separate process in its own pod cgroup. Both
// wait for one line on stdin (sent once the bench has moved them into
// their cgroups) before measuring, and print a childResult as JSON.

// childResult is what a measuring child reports.
type childResult struct {
	Hist     *Hist  `json:"hist"`
	Sent     int64  `json:"sent"`
	Received int64  `json:"received"`
	Error    string `json:"error,omitempty"`
}

const (
	memcachedKey   = "temper-bench"
	memcachedValue = 100 // bytes
	// maxPerConn bounds the in-flight queue of a connection (memory).
	maxPerConn = 1 << 20
)

func waitGo() error {
	_, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		return fmt.Errorf("failed to read the start line on stdin: %w", err)
	}
	return nil
}

func emit(r childResult) error {
	return json.NewEncoder(os.Stdout).Encode(r)
}

// runLoadgen sends `get` requests to memcached at a fixed total rate over
// conns connections, open loop, and records each response's latency from
// its due time.
func runLoadgen(addr string, rate float64, conns int, d time.Duration) error {
	if rate <= 0 || conns <= 0 || d <= 0 {
		return fmt.Errorf("loadgen: rate %v, conns %d and duration %v must be positive", rate, conns, d)
	}
	perConn := int64(rate*d.Seconds())/int64(conns) + 1
	if perConn > maxPerConn {
		return fmt.Errorf("loadgen: %d requests per connection exceeds the bound %d; lower -rate or -duration", perConn, maxPerConn)
	}
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("loadgen: failed to connect to memcached at %s: %w", addr, err)
		}
		defer c.Close()
		cs[i] = c
	}
	if err := setKey(cs[0]); err != nil {
		return err
	}
	if err := waitGo(); err != nil {
		return err
	}
	// One sender on one OS thread sleeps with nanosleep (a high-resolution
	// timer) between sends: the Go runtime's own timers wake up to about a
	// millisecond late here, which would count as latency.
	s := newSchedule(time.Now().Add(10*time.Millisecond), rate)
	n := s.count(d)
	type connResult struct {
		h    Hist
		got  int64
		due  chan time.Time
		err  error
		done chan struct{}
	}
	results := make([]*connResult, conns)
	var wg sync.WaitGroup
	for k, c := range cs {
		_ = c.SetDeadline(s.due(n).Add(10 * time.Second))
		cr := &connResult{due: make(chan time.Time, n/int64(conns)+1), done: make(chan struct{})}
		results[k] = cr
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := bufio.NewReader(c)
			for t := range cr.due {
				if err := readGet(r); err != nil {
					cr.err = fmt.Errorf("read response %d: %w", cr.got, err)
					close(cr.done)
					_ = c.Close()
					break
				}
				cr.h.Record(time.Since(t))
				cr.got++
			}
			for range cr.due {
			}
		}()
	}
	res := childResult{Hist: &Hist{}}
	sendErr := func() error {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		req := []byte("get " + memcachedKey + "\r\n")
		for i := range n {
			t := s.due(i)
			if w := time.Until(t); w > 0 {
				nanosleep(w)
			}
			k := s.conn(i, conns)
			cr := results[k]
			select {
			case <-cr.done:
				return fmt.Errorf("connection %d: %w", k, cr.err)
			case cr.due <- t:
			}
			if _, err := cs[k].Write(req); err != nil {
				return fmt.Errorf("connection %d: send request %d: %w", k, i, err)
			}
			res.Sent++
		}
		return nil
	}()
	for _, cr := range results {
		close(cr.due)
	}
	wg.Wait()
	if sendErr != nil {
		res.Error = sendErr.Error()
	}
	for k, cr := range results {
		res.Hist.Merge(&cr.h)
		res.Received += cr.got
		if cr.err != nil && res.Error == "" {
			res.Error = fmt.Sprintf("connection %d: %v", k, cr.err)
		}
	}
	return emit(res)
}

// nanosleep sleeps d on the calling thread with the kernel's
// high-resolution timer.
func nanosleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		if err := syscall.Nanosleep(&ts, &ts); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

func setKey(c net.Conn) error {
	val := strings.Repeat("x", memcachedValue)
	if _, err := fmt.Fprintf(c, "set %s 0 0 %d\r\n%s\r\n", memcachedKey, len(val), val); err != nil {
		return fmt.Errorf("loadgen: failed to set the key: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "STORED" {
		return fmt.Errorf("loadgen: set %s answered %q, %w; want STORED", memcachedKey, line, err)
	}
	return nil
}

// readGet reads one answer to `get`: VALUE line, data, END; or END alone.
func readGet(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "END") {
		return nil
	}
	if !strings.HasPrefix(line, "VALUE ") {
		return fmt.Errorf("unexpected memcached answer %q", strings.TrimSpace(line))
	}
	if _, err := r.Discard(memcachedValue + 2); err != nil {
		return err
	}
	line, err = r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "END") {
		return fmt.Errorf("unexpected memcached answer %q, want END", strings.TrimSpace(line))
	}
	return nil
}

// runProbe sleeps 1 ms on a timer again and again on one OS thread and
// records how late it runs after each expected wake-up.
func runProbe(d time.Duration) error {
	if err := waitGo(); err != nil {
		return err
	}
	runtime.LockOSThread()
	h := &Hist{}
	const nap = time.Millisecond
	end := time.Now().Add(d)
	var n int64
	for time.Now().Before(end) {
		t0 := time.Now()
		nanosleep(nap)
		h.Record(time.Since(t0) - nap)
		n++
	}
	return emit(childResult{Hist: h, Sent: n, Received: n})
}
