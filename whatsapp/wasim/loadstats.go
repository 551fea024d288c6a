package wasim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// latHist is a histogram of durations in microseconds: 20 µs buckets over
// [lo, lo+40 ms), and every value outside kept as it is (there are few;
// past maxHistOutlie of them, further ones above the range are only
// counted, as the largest). One writer at a time.
type latHist struct {
	lo   int64 // µs
	fine []uint32
	out  []int64
	over uint64 // outliers above the range not kept
	n    uint64
	min  int64
	max  int64
}

const (
	histStepUS    = 20
	histBuckets   = 2000 // 40 ms of 20 µs buckets
	histSpanUS    = histStepUS * histBuckets
	maxHistOutlie = 1 << 16 // outliers kept per histogram, beyond that only counted at the max
)

func newLatHist(lo int64) *latHist { return &latHist{lo: lo, fine: make([]uint32, histBuckets)} }

func (h *latHist) add(us int64) {
	if h.n == 0 || us < h.min {
		h.min = us
	}
	if h.n == 0 || us > h.max {
		h.max = us
	}
	h.n++
	if i := us - h.lo; i >= 0 && i < histSpanUS {
		h.fine[i/histStepUS]++
		return
	}
	if len(h.out) < maxHistOutlie || us < h.lo {
		h.out = append(h.out, us)
	} else {
		h.over++
	}
}

// addShifted adds every value of o, minus shift µs, into h (a bucket's
// values as its middle, kept within o's exact extremes).
func (h *latHist) addShifted(o *latHist, shift int64) {
	if o.n == 0 {
		return
	}
	for i, c := range o.fine {
		v := min(max(o.lo+int64(i)*histStepUS+histStepUS/2, o.min), o.max) - shift
		for k := uint32(0); k < c; k++ {
			h.add(v)
		}
	}
	for _, v := range o.out {
		h.add(v - shift)
	}
	for k := uint64(0); k < o.over; k++ {
		h.add(o.max - shift)
	}
}

// countAbove is how many values exceed us.
func (h *latHist) countAbove(us int64) uint64 {
	var c uint64
	for i, n := range h.fine {
		if h.lo+int64(i)*histStepUS >= us {
			c += uint64(n)
		}
	}
	for _, v := range h.out {
		if v > us {
			c++
		}
	}
	if h.max > us {
		c += h.over
	}
	return c
}

// quantile returns the q-quantile (0-1) in µs, to a bucket's width.
func (h *latHist) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	vals := slices.Clone(h.out)
	slices.Sort(vals)
	// Merge the outliers below lo, the buckets, and the outliers above.
	var seen uint64
	i := 0
	for ; i < len(vals) && vals[i] < h.lo; i++ {
		if seen++; seen == rank {
			return vals[i]
		}
	}
	for b, c := range h.fine {
		if seen+uint64(c) >= rank {
			return min(max(h.lo+int64(b)*histStepUS+histStepUS/2, h.min), h.max)
		}
		seen += uint64(c)
	}
	for ; i < len(vals); i++ {
		if seen++; seen == rank {
			return vals[i]
		}
	}
	return h.max
}

// Percentiles summarise a distribution, in milliseconds.
type Percentiles struct {
	N   uint64  `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func (h *latHist) percentiles() Percentiles {
	if h.n == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return math.Round(float64(us)/10) / 100 }
	return Percentiles{N: h.n, P50: ms(h.quantile(0.50)), P95: ms(h.quantile(0.95)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
}

func (p Percentiles) String() string {
	if p.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p95 %s  p99 %s  max %s ms", fms(p.P50), fms(p.P95), fms(p.P99), fms(p.Max))
}

func fms(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// percentilesOf summarises float samples (milliseconds).
func percentilesOf(v []float64) Percentiles {
	if len(v) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(v)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return math.Round(s[min(max(i, 0), len(s)-1)]*100) / 100
	}
	return Percentiles{N: uint64(len(s)), P50: at(0.5), P95: at(0.95), P99: at(0.99), Max: math.Round(s[len(s)-1]*100) / 100}
}

// Process figures from /proc (Linux).

// clockTicks is USER_HZ, 100 on every Linux platform Go runs on.
const clockTicks = 100

// procSample is one reading of a process: CPU time used so far (user +
// system, its threads included) and resident memory.
type procSample struct {
	cpuSeconds float64
	rssKiB     int64
	hwmKiB     int64
}

// readProc reads /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procSample{}, err
	}
	// The command name (field 2) may hold spaces: fields count from after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procSample{}, errors.New("proc stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procSample{}, errors.New("proc stat: too few fields")
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseUint(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return procSample{}, fmt.Errorf("proc stat: %w", err)
	}
	s := procSample{cpuSeconds: float64(utime+stime) / clockTicks}
	st, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return procSample{}, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &s.rssKiB
		case "VmHWM":
			dst = &s.hwmKiB
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		if err == nil {
			*dst = n
		}
	}
	return s, sc.Err()
}

// machineSample is the whole machine's CPU time so far (/proc/stat), in
// seconds summed over the CPUs.
type machineSample struct {
	busy, idle, softirq, steal float64
	ok                         bool
}

func readMachine() machineSample {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineSample{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineSample{}
	}
	v := make([]float64, len(f)-1)
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return machineSample{}
		}
		v[i] = float64(n) / clockTicks
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]
	// (guest time is already in user).
	m := machineSample{idle: v[3] + v[4], softirq: v[6], steal: v[7], ok: true}
	m.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return m
}

// PIDListeningOn finds the process holding a listening TCP socket on port
// (any local address), from /proc/net/tcp{,6} and the processes' fds.
func PIDListeningOn(port int) (int, error) {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fl[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 32); !ok || err != nil || int(p) != port {
				continue
			}
			inodes["socket:["+fl[9]+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("no process listens on TCP port %d", port)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		if err != nil {
			continue // not ours to look at
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name())); err == nil && inodes[l] {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("the socket listening on TCP port %d belongs to no process we can see", port)
}
