package procscan

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
)

// maxCgroupDirs bounds the container cgroups read under one pod cgroup.
const maxCgroupDirs = 64

// ReadCgroupProcs appends to dst the processes of the pod cgroup dir: its
// own cgroup.procs and those of its direct children (the kubelet puts
// containers one level below the pod), at most max pids and 64 children. The
// kernel may list a pid twice across a move; duplicates are dropped. A
// child that disappears while being read is skipped.
func ReadCgroupProcs(dir string, maxPIDs int, dst []int) ([]int, error) {
	seen := map[int]bool{}
	for _, p := range dst {
		seen[p] = true
	}
	start := len(dst)
	dst, err := appendProcs(filepath.Join(dir, "cgroup.procs"), start+maxPIDs, dst, seen)
	if err != nil {
		return dst, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return dst, fmt.Errorf("failed to list cgroup %s: %w", dir, err)
	}
	children := 0
	for _, e := range entries {
		if !e.IsDir() || len(dst)-start >= maxPIDs {
			continue
		}
		if children++; children > maxCgroupDirs {
			break
		}
		dst, err = appendProcs(filepath.Join(dir, e.Name(), "cgroup.procs"), start+maxPIDs, dst, seen)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return dst, err
		}
	}
	return dst, nil
}

// appendProcs appends the pids of one cgroup.procs file, up to limit
// entries in dst, reading at most 64 KiB.
func appendProcs(path string, limit int, dst []int, seen map[int]bool) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return dst, fmt.Errorf("failed to read %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return dst, fmt.Errorf("failed to read %s: %w", path, err)
	}
	if len(b) == 64<<10 {
		// Cut mid-file: drop the partial last line.
		b = b[:bytes.LastIndexByte(b, '\n')+1]
	}
	for line := range bytes.Lines(b) {
		if len(dst) >= limit {
			break
		}
		pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
		if err != nil || pid <= 0 {
			continue
		}
		if !seen[pid] {
			seen[pid] = true
			dst = append(dst, pid)
		}
	}
	return dst, nil
}
