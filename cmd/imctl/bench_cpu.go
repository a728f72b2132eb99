package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Server CPU per message: imctl bench run on the machine that runs the
// stack (make dev) reads the CPU time of every server process from /proc
// before and after the measured window, and divides by the messages
// delivered. The load generator (imctl itself) is not counted. Elsewhere
// (pods on other machines) nothing matches and the figure is left out.

// ProcessCPU is one server process's CPU over the measured window.
type ProcessCPU struct {
	Name    string  `json:"name"`
	PID     int     `json:"pid"`
	Seconds float64 `json:"cpu_seconds"`
	Cores   float64 `json:"cores"` // Seconds / window
}

// serverProcess names a process of the stack from its command line, or "".
func serverProcess(args []string) string {
	if len(args) == 0 {
		return ""
	}
	base := filepath.Base(args[0])
	switch {
	case base == "imcluster" && len(args) > 1 && (args[1] == "message" || args[1] == "push"):
		return args[1]
	case base == "etcd":
		return "etcd"
	case slices.Contains(args, "kafka.Kafka"):
		return "kafka"
	case slices.Contains(args, "org.apache.cassandra.service.CassandraDaemon"):
		return "cassandra"
	}
	return ""
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// procCPU returns the user+system CPU seconds of pid so far.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: fields count from ")".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseFloat(f[11], 64) // field 14
	stime, err2 := strconv.ParseFloat(f[12], 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return (utime + stime) / clockTicks, nil
}

// cpuSnapshot is the CPU seconds of every server process found.
type cpuSnapshot map[int]ProcessCPU

// snapshotServerCPU reads the CPU of the processes named in pids
// ("name=pid,..."), or when it is empty of the stack's server processes
// found in /proc.
func snapshotServerCPU(pids string) (cpuSnapshot, error) {
	snap := cpuSnapshot{}
	if pids != "" {
		for _, kv := range strings.Split(pids, ",") {
			name, p, ok := strings.Cut(kv, "=")
			pid, err := strconv.Atoi(p)
			if !ok || err != nil || pid <= 0 {
				return nil, fmt.Errorf("--server-pids: %q is not name=pid", kv)
			}
			secs, err := procCPU(pid)
			if err != nil {
				return nil, fmt.Errorf("--server-pids: %w", err)
			}
			snap[pid] = ProcessCPU{Name: name, PID: pid, Seconds: secs}
		}
		return snap, nil
	}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			continue
		}
		name := serverProcess(strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00"))
		if name == "" {
			continue
		}
		if secs, err := procCPU(pid); err == nil {
			snap[pid] = ProcessCPU{Name: name, PID: pid, Seconds: secs}
		}
	}
	return snap, nil
}

// since returns each process's CPU between before and s over window
// seconds (processes present in both), sorted by name, and their sum.
func (s cpuSnapshot) since(before cpuSnapshot, window float64) ([]ProcessCPU, float64) {
	var out []ProcessCPU
	var total float64
	for pid, now := range s {
		was, ok := before[pid]
		if !ok {
			continue
		}
		p := ProcessCPU{Name: now.Name, PID: pid, Seconds: now.Seconds - was.Seconds}
		p.Cores = p.Seconds / window
		out = append(out, p)
		total += p.Seconds
	}
	slices.SortFunc(out, func(a, b ProcessCPU) int {
		return strings.Compare(a.Name+strconv.Itoa(a.PID), b.Name+strconv.Itoa(b.PID))
	})
	return out, total
}
