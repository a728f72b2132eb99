package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// CPU accounting of the server processes named in -pids and of this one.
type cpuSample map[string]float64

func cpuNow() cpuSample {
	s := cpuSample{"bench": procCPU(os.Getpid())}
	if *flagPids == "" {
		return s
	}
	for _, kv := range strings.Split(*flagPids, ",") {
		name, pid, _ := strings.Cut(kv, "=")
		n, _ := strconv.Atoi(pid)
		s[name] = procCPU(n)
	}
	return s
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func reportCPU(phase string, before cpuSample, el time.Duration) {
	now := cpuNow()
	var parts []string
	for _, k := range []string{"bench", "kafka", "cassandra", "etcd"} {
		if b, ok := before[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.1f cores", k, (now[k]-b)/el.Seconds()))
		}
	}
	fmt.Printf("  cpu during %s (%s): %s\n", phase, el.Round(time.Millisecond), strings.Join(parts, ", "))
}
