// Command bench measures the message tier against the real stack, all in

// one run so the figures compare: raw Kafka produce rate, raw Cassandra
// single-row insert rate, API send rate and ack latency (open loop at a
// fixed rate, and closed loop at saturation), pipeline throughput (records
// persisted + routed per second), and the pull of 1,000 unread messages.
//
//	go run ./services/message/bench -pids kafka=PID,cassandra=PID
//
// Each phase uses its own topic and keyspace, dropped at the end. -pids
// reports the CPU seconds each server process used per phase (from
// /proc/PID/stat), which is what bounds a figure on a shared 2-core machine.
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
