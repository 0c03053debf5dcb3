package writer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// DefaultBootIDFile is where Linux publishes the ID of the current boot.
const DefaultBootIDFile = "/proc/sys/kernel/random/boot_id"

// Options are the dependencies of a Writer.
type Options struct {
	// Root is the cgroup mount root (e.g. /sys/fs/cgroup, or a faked tree);
	// the writer refuses paths outside it. Required.
	Root string
	// StateDir holds the originals file and the writer's lock, on the host
	// (e.g. /var/lib/infera), so they outlive the agent. Required.
	StateDir string
	// BootIDFile is read to tag the state file; default DefaultBootIDFile.
	BootIDFile string
	// AuditSize bounds the audit ring; default 1024.
	AuditSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Log receives state-file reports and once-per-file-name notices of
	// missing files; writes themselves go to the audit ring.
	Log logr.Logger
}

// Op asks for one cgroup file to hold a value.
type Op struct {
	// Path is the absolute cgroup directory, File the file in it.
	Path, File string
	// Value is written as given (the kernel ignores a trailing newline).
	Value string
	// Reason says why, for the audit ("tier background: idle").
	Reason string
	// Rebase marks a value the caller derives from the file's original (a
	// tier's weight scaled from the kubelet's). When something else later
	// sets the file to a value that is neither this one nor the original,
	// that value is the new original (the kubelet resized the pod in
	// place), not drift to revert: see Rebase.
	Rebase bool
}

// Change is what Set did to one file.
type Change struct {
	Path, File string
	// Old is the value found, New the value read back after the write (Old
	// again when nothing was written); both without surrounding blanks.
	Old, New string
	// Wrote is true when the file was written.
	Wrote bool
	// Drift is true when the file had been changed behind the writer's back
	// since it last wrote the same value.
	Drift bool
}

// Stats are the writer's counters since New; they only grow.
type Stats struct {
	// Writes counts successful writes of any kind (set, drift, restore).
	Writes uint64
	// Unchanged counts Set and Reassert checks that found the value already
	// in place.
	Unchanged uint64
	// Drift counts values found changed behind the writer's back and
	// re-asserted.
	Drift uint64
	// Errors counts failed reads and writes, missing files and gone cgroups
	// excluded.
	Errors uint64
	// Gone counts operations on cgroups that had vanished.
	Gone uint64
	// Missing counts operations on files a cgroup does not have.
	Missing uint64
	// Restored counts originals written back.
	Restored uint64
}

// Desired is a value the writer keeps asserting.
type Desired struct {
	Path, File, Value, Reason string
	// Applied is what the file read back after the writer last wrote or
	// confirmed Value; Reassert compares the file against it.
	Applied string
}

type key struct{ path, file string }

type desired struct {
	value, reason, applied string
	rebase                 bool
}

// Writer is the one writer of cgroup files. It is safe for concurrent use.
type Writer struct {
	root, stateDir, bootID string
	now                    func() time.Time
	log                    logr.Logger
	fs                     fileSystem
	lock                   *os.File
	report                 StateReport

	mu            sync.Mutex
	originals     map[key]Original
	desired       map[key]desired
	audit         *ring
	missingLogged map[string]bool

	writes, unchanged, drift, errs, gone, missing, restored atomic.Uint64
}

// New creates the writer: it locks the state directory (ErrLocked if
// another writer holds it), and adopts the originals a previous run of this
// boot recorded. A state file from another boot or a corrupt one is set
// aside and reported by StateReport, not trusted. Close releases the lock.
func New(opts Options) (*Writer, error) {
	if opts.Root == "" || !filepath.IsAbs(opts.Root) {
		return nil, fmt.Errorf("failed to create cgroup writer: the cgroup root %q must be an absolute path", opts.Root)
	}
	if opts.StateDir == "" {
		return nil, errors.New("failed to create cgroup writer: no state dir")
	}
	if opts.BootIDFile == "" {
		opts.BootIDFile = DefaultBootIDFile
	}
	if opts.AuditSize <= 0 {
		opts.AuditSize = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	bootID, err := readBootID(opts.BootIDFile)
	if err != nil {
		return nil, fmt.Errorf("failed to create cgroup writer: %w", err)
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("failed to create cgroup writer state dir %s: %w", opts.StateDir, err)
	}
	lock, err := lockDir(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("failed to create cgroup writer: %w", err)
	}
	originals, rep, err := loadState(opts.StateDir, bootID, opts.Now())
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("failed to create cgroup writer: %w", err)
	}
	if rep.SetAside != "" {
		opts.Log.Info("Set aside an untrusted cgroup state file; its originals are not restored",
			"stateFile", rep.Path, "movedTo", rep.SetAside, "reason", rep.Reason, "originalsUnknown", rep.OriginalsUnknown)
		if rep.OriginalsUnknown {
			// Remember for the rest of the boot, even across a crash before
			// the first write, that found values are not originals.
			if err := saveState(opts.StateDir, bootID, opts.Now(), originals, true); err != nil {
				lock.Close()
				return nil, fmt.Errorf("failed to create cgroup writer: %w", err)
			}
		}
	} else if rep.Adopted > 0 {
		opts.Log.Info("Adopted cgroup originals from a previous run in this boot", "stateFile", rep.Path, "originals", rep.Adopted)
	}
	return &Writer{
		root: filepath.Clean(opts.Root), stateDir: opts.StateDir, bootID: bootID,
		now: opts.Now, log: opts.Log, fs: newOSFS(), lock: lock, report: rep,
		originals: originals, desired: map[key]desired{},
		audit: newRing(opts.AuditSize), missingLogged: map[string]bool{},
	}, nil
}

// ErrOriginalUnknown means the writer cannot tell a file's original: a
// state file of this boot was set aside, so the file may hold a value an
// earlier agent wrote. The caller derives the original (Derive) or leaves
// the file alone.
var ErrOriginalUnknown = errors.New("original value unknown: a state file of this boot was set aside")

func (w *Writer) save() error {
	return saveState(w.stateDir, w.bootID, w.now(), w.originals, w.report.OriginalsUnknown)
}

// Derive records value, derived by the caller from the pod spec with the
// kubelet's formula, as the original of path/file when none is recorded,
// and persists it. Use it when Found reports ErrOriginalUnknown.
func (w *Writer) Derive(path, file, value string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := key{path, file}
	if _, ok := w.originals[k]; ok {
		return nil
	}
	if err := w.validTarget(path, file); err != nil {
		return err
	}
	if _, err := w.fs.ReadFile(filepath.Join(path, file)); err != nil {
		return w.failed(classify(w.fs, "read", path, file, err), path, file)
	}
	w.originals[k] = Original{Path: path, File: file, Value: strings.TrimSpace(value) + "\n", Recorded: w.now().UTC(), Derived: true}
	if err := w.save(); err != nil {
		delete(w.originals, k)
		return fmt.Errorf("failed to record the derived original of %s: %w", filepath.Join(path, file), err)
	}
	return nil
}

// Close releases the state directory lock. It writes nothing back: the
// cgroup values stay as set (DESIGN.md §7, agent dies), and the next writer
// adopts the originals.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lock == nil {
		return nil
	}
	if o, ok := w.fs.(*osFS); ok {
		o.close()
	}
	err := w.lock.Close()
	w.lock = nil
	return err
}

// StateReport says what New found in the state directory.
func (w *Writer) StateReport() StateReport { return w.report }

// Set makes path/file hold value: it writes only when the current value
// differs, reads the value back, records the original before the first
// write (persisted before writing), and audits the write. The errors wrap
// ErrGone (the cgroup vanished; the writer forgets it), ErrMissingFile,
// ErrNotWritable or ErrRejected, and carry the errno.
func (w *Writer) Set(path, file, value, reason string) (Change, error) {
	res := w.Apply(Op{Path: path, File: file, Value: value, Reason: reason})
	return res[0].Change, res[0].Err
}

// Result is the outcome of one Op.
type Result struct {
	Op     Op
	Change Change
	Err    error
}

// Apply is Set for several files, in order, persisting new originals once.
// Order matters to the kernel: narrow a v1 cpuset child before its parent,
// widen the parent first.
func (w *Writer) Apply(ops ...Op) []Result {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.apply(ops, KindSet)
}

// plan is an Op after its first read.
type plan struct {
	cur   string // raw content
	write bool
	drift bool
	added []key // originals first recorded for this op
}

// apply runs ops in segments in which no file occurs twice (counting the
// files the kernel couples), so a later op on a file sees what an earlier
// op of the batch wrote; each segment reads, persists new originals once,
// then writes.
func (w *Writer) apply(ops []Op, kind Kind) []Result {
	res := make([]Result, 0, len(ops))
	start := 0
	inSeg := map[key]bool{}
	for i, op := range ops {
		keys := []key{{op.Path, op.File}}
		for _, f := range coupled[op.File] {
			keys = append(keys, key{op.Path, f})
		}
		clash := false
		for _, k := range keys {
			clash = clash || inSeg[k]
		}
		if clash {
			res = append(res, w.applySegment(ops[start:i], kind)...)
			start = i
			clear(inSeg)
		}
		for _, k := range keys {
			inSeg[k] = true
		}
	}
	return append(res, w.applySegment(ops[start:], kind)...)
}

func (w *Writer) applySegment(ops []Op, kind Kind) []Result {
	res := make([]Result, len(ops))
	plans := make([]plan, len(ops))
	var added []key
	for i, op := range ops {
		res[i].Op = op
		res[i].Change = Change{Path: op.Path, File: op.File}
		if err := w.validTarget(op.Path, op.File); err != nil {
			w.errs.Add(1)
			res[i].Err = err
			continue
		}
		cur, err := w.read(op.Path, op.File)
		if err != nil {
			res[i].Err = err
			continue
		}
		k := key{op.Path, op.File}
		curT := strings.TrimSpace(cur)
		res[i].Change.Old, res[i].Change.New = curT, curT
		d, known := w.desired[k]
		same := known && d.value == op.Value
		if curT == strings.TrimSpace(op.Value) || same && curT == d.applied {
			w.unchanged.Add(1)
			w.desired[k] = desired{value: op.Value, reason: op.Reason, applied: curT, rebase: op.Rebase}
			continue
		}
		plans[i] = plan{cur: cur, write: true, drift: same || kind == KindDrift, added: w.recordOriginal(op.Path, op.File, cur)}
		added = append(added, plans[i].added...)
	}

	if len(added) > 0 {
		if err := w.save(); err != nil {
			// Never change a value whose original is not safely on disk.
			for _, k := range added {
				delete(w.originals, k)
			}
			for i := range ops {
				if plans[i].write {
					w.errs.Add(1)
					plans[i].write = false
					// The cause first: the status shows the first 200
					// characters, and a cgroup path is long.
					res[i].Err = fmt.Errorf("failed to record the original (%s), so %s is left untouched: %w",
						rootCause(err), filepath.Join(ops[i].Path, ops[i].File), err)
				}
			}
		}
	}

	var unneeded []key       // originals recorded for writes that failed
	needed := map[key]bool{} // originals of files a successful write changed
	for i, op := range ops {
		if !plans[i].write {
			continue
		}
		k := key{op.Path, op.File}
		recKind := KindSet
		if plans[i].drift {
			recKind = KindDrift
		}
		newV, err := w.write(recKind, op.Path, op.File, strings.TrimSpace(plans[i].cur), op.Value, op.Reason)
		if err != nil {
			res[i].Err = err
			unneeded = append(unneeded, plans[i].added...)
			continue
		}
		needed[k] = true
		for _, f := range coupled[op.File] {
			needed[key{op.Path, f}] = true
		}
		if plans[i].drift {
			w.drift.Add(1)
		}
		w.desired[k] = desired{value: op.Value, reason: op.Reason, applied: newV, rebase: op.Rebase}
		res[i].Change.New, res[i].Change.Wrote, res[i].Change.Drift = newV, true, plans[i].drift
	}
	// A failed write changed nothing, so the originals only it recorded are
	// dropped again, unless another write of the batch changed those files.
	unrecorded := false
	for _, k := range unneeded {
		if _, ok := w.originals[k]; ok && !needed[k] {
			delete(w.originals, k)
			unrecorded = true
		}
	}
	if unrecorded {
		if err := w.save(); err != nil {
			w.log.Error(err, "Failed to persist cgroup originals after a failed write")
		}
	}
	return res
}

// coupled lists the files whose value the kernel rewrites when a file is
// written, so their originals are recorded too.
var coupled = map[string][]string{
	"cpu.idle":        {"cpu.shares", "cpu.weight", "cpu.weight.nice"},
	"cpu.weight":      {"cpu.weight.nice"},
	"cpu.weight.nice": {"cpu.weight"},
}

// restoreRank orders the files of one cgroup for restoring: cpu.idle first
// (clearing it resets the weight), then cpu.weight.nice, then the weights
// (so the exact original weight wins), then the rest.
func restoreRank(file string) int {
	switch file {
	case "cpu.idle":
		return 0
	case "cpu.weight.nice":
		return 1
	case "cpu.weight", "cpu.shares":
		return 2
	default:
		return 3
	}
}

// recordOriginal records cur as the original of path/file, and the current
// values of its coupled files, unless already recorded. It returns the keys
// it added.
func (w *Writer) recordOriginal(path, file, cur string) []key {
	var added []key
	now := w.now().UTC()
	k := key{path, file}
	if _, ok := w.originals[k]; !ok {
		w.originals[k] = Original{Path: path, File: file, Value: cur, Recorded: now}
		added = append(added, k)
	}
	for _, f := range coupled[file] {
		ck := key{path, f}
		if _, ok := w.originals[ck]; ok {
			continue
		}
		b, err := w.fs.ReadFile(filepath.Join(path, f))
		if err != nil {
			continue // not there on this version or controller
		}
		w.originals[ck] = Original{Path: path, File: f, Value: string(b), Recorded: now}
		added = append(added, ck)
	}
	return added
}

// write writes value, reads it back and audits. old is the trimmed value
// before. It returns the trimmed value read back.
func (w *Writer) write(kind Kind, path, file, old, value, reason string) (string, error) {
	rec := Record{Time: w.now(), Kind: kind, Path: path, File: file, Old: old, New: strings.TrimSpace(value), Reason: reason}
	if err := w.fs.WriteFile(filepath.Join(path, file), []byte(value)); err != nil {
		err = w.failed(classify(w.fs, "write", path, file, err), path, file)
		rec.Err = err.Error()
		w.audit.add(rec)
		return "", err
	}
	w.writes.Add(1)
	b, err := w.fs.ReadFile(filepath.Join(path, file))
	if err != nil {
		// Written but not confirmed: audit what was asked for.
		err = w.failed(classify(w.fs, "read back", path, file, err), path, file)
		rec.Err = err.Error()
		w.audit.add(rec)
		return "", err
	}
	rec.New = strings.TrimSpace(string(b))
	w.audit.add(rec)
	return rec.New, nil
}

// read returns the raw content of path/file.
func (w *Writer) read(path, file string) (string, error) {
	b, err := w.fs.ReadFile(filepath.Join(path, file))
	if err != nil {
		return "", w.failed(classify(w.fs, "read", path, file, err), path, file)
	}
	return string(b), nil
}

// failed counts a classified error, forgets a gone cgroup, and logs a
// missing file once per file name.
func (w *Writer) failed(err error, path, file string) error {
	switch {
	case errors.Is(err, ErrGone):
		w.gone.Add(1)
		w.forget(path)
	case errors.Is(err, ErrMissingFile):
		w.missing.Add(1)
		if !w.missingLogged[file] {
			w.missingLogged[file] = true
			w.log.Info("Cgroup file missing; further misses of this file are only counted", "file", file, "cgroupPath", path)
		}
	default:
		w.errs.Add(1)
	}
	return err
}

func (w *Writer) validTarget(path, file string) error {
	if err := validTarget(path, file); err != nil {
		return err
	}
	rel, err := filepath.Rel(w.root, path)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return fmt.Errorf("failed to use cgroup path %s: outside the cgroup root %s", path, w.root)
	}
	return nil
}

func validTarget(path, file string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("failed to use cgroup path %q: must be absolute and clean", path)
	}
	if file == "" || file == "." || file == ".." || strings.ContainsRune(file, filepath.Separator) {
		return fmt.Errorf("failed to use cgroup file %q in %s: must be a plain file name", file, path)
	}
	return nil
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// forget drops what the writer knows about a cgroup and everything below
// it. Callers hold mu. A failure to persist is logged: the stale entries
// only cost a skipped restore later (the cgroup is gone).
func (w *Writer) forget(path string) {
	if o, ok := w.fs.(*osFS); ok {
		o.forget(path)
	}
	changed := false
	for k := range w.originals {
		if under(k.path, path) {
			delete(w.originals, k)
			changed = true
		}
	}
	for k := range w.desired {
		if under(k.path, path) {
			delete(w.desired, k)
		}
	}
	if changed {
		if err := w.save(); err != nil {
			w.log.Error(err, "Failed to persist cgroup originals after forgetting a cgroup", "cgroupPath", path)
		}
	}
}

// Forget drops the desired values and originals of a cgroup and everything
// below it, without writing: for a cgroup that is gone or was handed back
// by other means.
func (w *Writer) Forget(path string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.forget(path)
}

// Release stops asserting a value on path/file without restoring it; the
// original stays recorded for RestoreAll.
func (w *Writer) Release(path, file string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.desired, key{path, file})
}

// ReassertResult summarises one Reassert.
type ReassertResult struct {
	// Checked is the number of desired values read.
	Checked int
	// Drifted is the number found changed behind the writer's back and
	// re-written.
	Drifted int
	// Gone is the number whose cgroup had vanished (now forgotten).
	Gone int
	// Rebased is the number of values derived from their original (Op
	// Rebase) that something else set to a new value: that value became
	// the original and the desired value was dropped, for the caller to
	// derive again (a kubelet in-place resize).
	Rebased int
}

// Reassert reads every desired value and re-writes those something else
// changed (the kubelet, a runtime, an operator), counting them as drift.
// Gone cgroups are forgotten, not errors; the other failures come back
// joined in one error.
func (w *Writer) Reassert() (ReassertResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var res ReassertResult
	var errs []error
	keys := sortedKeys(w.desired, false)
	ops := make([]Op, 0, len(keys))
	for _, k := range keys {
		d := w.desired[k]
		if d.rebase {
			rebased, err := w.rebase(k)
			if err != nil && !errors.Is(err, ErrGone) {
				errs = append(errs, err)
			}
			if rebased {
				res.Checked++
				res.Rebased++
				continue
			}
		}
		ops = append(ops, Op{Path: k.path, File: k.file, Value: d.value, Reason: d.reason, Rebase: d.rebase})
	}
	for _, r := range w.apply(ops, KindDrift) {
		res.Checked++
		switch {
		case errors.Is(r.Err, ErrGone):
			res.Gone++
		case r.Err != nil:
			errs = append(errs, r.Err)
		case r.Change.Drift:
			res.Drifted++
		}
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("failed to reassert %d of %d cgroup values: %w", len(errs), res.Checked, errors.Join(errs...))
	}
	return res, nil
}

// sortedKeys orders keys parents first (children first when reverse), and
// within a cgroup by restoreRank.
func sortedKeys[V any](m map[key]V, reverse bool) []key {
	keys := make([]key, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		da, db := strings.Count(a.path, "/"), strings.Count(b.path, "/")
		if da != db {
			return (da < db) != reverse
		}
		if a.path != b.path {
			return a.path < b.path
		}
		if ra, rb := restoreRank(a.file), restoreRank(b.file); ra != rb {
			return ra < rb
		}
		return a.file < b.file
	})
	return keys
}

// RestoreResult summarises a restore.
type RestoreResult struct {
	// Restored originals were written back; Unchanged ones already held
	// their original value; Gone ones belonged to vanished cgroups.
	Restored, Unchanged, Gone int
	// Failed lists the originals that could not be written back; they stay
	// recorded for the next attempt.
	Failed []FileError
}

// FileError is a failure on one cgroup file.
type FileError struct {
	Path, File string
	Err        error
}

func (e FileError) Error() string { return e.Err.Error() }

func (e FileError) Unwrap() error { return e.Err }

// RestoreError is the one error a restore with failures returns.
type RestoreError struct {
	Failed []FileError
	Total  int
}

func (e *RestoreError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "failed to restore %d of %d cgroup files", len(e.Failed), e.Total)
	for i, f := range e.Failed {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-i)
			break
		}
		fmt.Fprintf(&b, "; %v", f.Err)
	}
	return b.String()
}

// Unwrap lets errors.Is see every file's error.
func (e *RestoreError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f
	}
	return errs
}

// RestoreAll writes every recorded original back and stops asserting
// anything: after it, every file the writer changed holds the value it
// found. Cgroups that vanished are counted and skipped, not failures. Files
// that cannot be restored stay recorded (and in the state file) and come
// back in one *RestoreError.
func (w *Writer) RestoreAll() (RestoreResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	clear(w.desired)
	return w.restore(func(key) bool { return true })
}

// Restore writes back the originals of a cgroup and everything below it and
// stops asserting values there, e.g. when a pod leaves a tier that needed
// changes.
func (w *Writer) Restore(path string) (RestoreResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.desired {
		if under(k.path, path) {
			delete(w.desired, k)
		}
	}
	return w.restore(func(k key) bool { return under(k.path, path) })
}

// RestoreUndesired writes back every original whose file the writer no
// longer asserts: what a previous run (adopted from the state file) or a
// previous policy changed and the current one does not. After it, every
// recorded original belongs to a desired value.
func (w *Writer) RestoreUndesired() (RestoreResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A desired file keeps the originals of the files it couples, too
	// (a desired cpu.idle=1 holds the weight's original: writing it back
	// would fail while idle is set, and undo what idle means).
	kept := make(map[key]bool, len(w.desired))
	for k := range w.desired {
		kept[k] = true
		for _, f := range coupled[k.file] {
			kept[key{k.path, f}] = true
		}
	}
	return w.restore(func(k key) bool { return !kept[k] })
}

// restore writes back the selected originals. Parents go first, which a
// widening cpuset needs; what the kernel rejects with EBUSY or EINVAL (a
// parent narrower than a child, a weight while cpu.idle is set) is retried
// in the opposite order as long as each pass makes progress.
func (w *Writer) restore(sel func(key) bool) (RestoreResult, error) {
	var res RestoreResult
	pending := map[key]Original{}
	for k, o := range w.originals {
		if sel(k) {
			pending[k] = o
		}
	}
	total := len(pending)
	if total == 0 {
		return res, nil // nothing to write, nor to persist
	}
	failed := map[key]error{}
	for pass := 0; len(pending) > 0; pass++ {
		progress := false
		for _, k := range sortedKeys(pending, pass%2 == 1) {
			done, err := w.restoreOne(pending[k], &res)
			switch {
			case done: // restored, already in place, or gone
				delete(pending, k)
				delete(failed, k)
				delete(w.originals, k)
				progress = true
			case retryable(err):
				failed[k] = err // another order may work
			default:
				failed[k] = err
				delete(pending, k)
			}
		}
		if !progress {
			break
		}
	}
	for k, err := range failed {
		res.Failed = append(res.Failed, FileError{Path: k.path, File: k.file, Err: err})
	}
	sort.Slice(res.Failed, func(i, j int) bool {
		if res.Failed[i].Path != res.Failed[j].Path {
			return res.Failed[i].Path < res.Failed[j].Path
		}
		return res.Failed[i].File < res.Failed[j].File
	})
	var errs []error
	if err := w.save(); err != nil {
		errs = append(errs, err)
	}
	if len(res.Failed) > 0 {
		errs = append(errs, &RestoreError{Failed: res.Failed, Total: total})
	}
	return res, errors.Join(errs...)
}

// restoreOne writes one original back. done reports that the original needs
// no further attempt; err is set for failures (a gone cgroup is done without
// error).
func (w *Writer) restoreOne(o Original, res *RestoreResult) (done bool, err error) {
	if _, statErr := w.fs.Stat(o.Path); errors.Is(statErr, fs.ErrNotExist) {
		res.Gone++
		w.gone.Add(1)
		return true, nil
	}
	cur, err := w.read(o.Path, o.File)
	if err != nil {
		if errors.Is(err, ErrGone) {
			res.Gone++
			return true, nil
		}
		return false, err
	}
	if strings.TrimSpace(cur) == strings.TrimSpace(o.Value) {
		res.Unchanged++
		return true, nil
	}
	if _, err := w.write(KindRestore, o.Path, o.File, strings.TrimSpace(cur), o.Value, "restore original"); err != nil {
		if errors.Is(err, ErrGone) {
			res.Gone++
			return true, nil
		}
		return false, err
	}
	res.Restored++
	w.restored.Add(1)
	return true, nil
}

// Rebase checks a value set with Op.Rebase: when the file now holds
// something that is neither what the writer applied nor the recorded
// original, something else (the kubelet resizing the pod in place) made a
// change the writer did not make, and that value becomes the new original
// (persisted, audited as KindRebase) and the desired value is dropped, so
// the caller derives it again from Found. It reports whether it rebased.
// A value put back to the original is drift, left to Reassert.
func (w *Writer) Rebase(path, file string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rebase(key{path, file})
}

func (w *Writer) rebase(k key) (bool, error) {
	d, ok := w.desired[k]
	if !ok || !d.rebase {
		return false, nil
	}
	cur, err := w.read(k.path, k.file)
	if err != nil {
		return false, err
	}
	curT := strings.TrimSpace(cur)
	o, hasOrig := w.originals[k]
	if curT == d.applied || curT == strings.TrimSpace(d.value) || hasOrig && curT == strings.TrimSpace(o.Value) {
		return false, nil
	}
	prev := o
	w.originals[k] = Original{Path: k.path, File: k.file, Value: cur, Recorded: w.now().UTC()}
	if err := w.save(); err != nil {
		if hasOrig {
			w.originals[k] = prev
		} else {
			delete(w.originals, k)
		}
		return false, fmt.Errorf("failed to record the new original of %s: %w", filepath.Join(k.path, k.file), err)
	}
	delete(w.desired, k)
	w.audit.add(Record{Time: w.now(), Kind: KindRebase, Path: k.path, File: k.file, Old: strings.TrimSpace(prev.Value), New: curT,
		Reason: "changed behind the writer's back to a new value: the new original (was " + d.reason + ")"})
	w.log.Info("A value the writer derived was changed to a new value by something else; it is the new original",
		"cgroupPath", k.path, "file", k.file, "previousOriginal", strings.TrimSpace(prev.Value), "newOriginal", curT)
	return true, nil
}

// Found returns the value path/file had before the writer first changed it
// (its recorded original), or its current value when the writer has not
// changed it; trimmed. Policies that derive a value from the kubelet's (a
// weight divided by four) start from it, so re-applying never compounds.
func (w *Writer) Found(path, file string) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if o, ok := w.originals[key{path, file}]; ok {
		return strings.TrimSpace(o.Value), nil
	}
	if err := w.validTarget(path, file); err != nil {
		return "", err
	}
	if w.report.OriginalsUnknown {
		return "", fmt.Errorf("failed to tell the original of %s: %w", filepath.Join(path, file), ErrOriginalUnknown)
	}
	cur, err := w.read(path, file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(cur), nil
}

// Audit returns the audit ring, oldest first.
func (w *Writer) Audit() []Record {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.audit.records()
}

// Stats returns the counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Writes: w.writes.Load(), Unchanged: w.unchanged.Load(), Drift: w.drift.Load(),
		Errors: w.errs.Load(), Gone: w.gone.Load(), Missing: w.missing.Load(), Restored: w.restored.Load(),
	}
}

// Originals returns the recorded originals, sorted by path and file.
func (w *Writer) Originals() []Original {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Original, 0, len(w.originals))
	for _, k := range sortedKeys(w.originals, false) {
		out = append(out, w.originals[k])
	}
	return out
}

// Desired returns the values the writer keeps asserting, parents first.
func (w *Writer) Desired() []Desired {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Desired, 0, len(w.desired))
	for _, k := range sortedKeys(w.desired, false) {
		d := w.desired[k]
		out = append(out, Desired{Path: k.path, File: k.file, Value: d.value, Reason: d.reason, Applied: d.applied})
	}
	return out
}

// rootCause is the innermost message of err's chain, e.g. "no space left on
// device" for a state file on a full disk.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
