package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
)

// profiles are the pprof files a run writes (go tool pprof reads them): the
// CPU over the whole run, and at exit the allocations since start, the
// contended mutexes and the blocking (channels, selects, locks); and the
// heap in use whenever the process gets SIGUSR1 (calls up: the memory a
// call holds), to heap.1, heap.2, ...
type profiles struct {
	cpu, allocs, mutex, block, heap string
}

// blockProfileRate samples blocking events at about one per 100 µs spent
// blocked: every call's goroutines block 50 times a second by design
// (readers, pacers), and recording each would cost more than it shows.
const blockProfileRate = 100_000

// start begins the profiles asked for; stop ends the CPU profile and writes
// the others.
func (p profiles) start() (stop func() error, err error) {
	var cpuFile *os.File
	if p.cpu != "" {
		f, err := os.Create(p.cpu)
		if err != nil {
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("cpu profile: %w", err)
		}
		cpuFile = f
	}
	if p.mutex != "" {
		runtime.SetMutexProfileFraction(1)
	}
	if p.block != "" {
		runtime.SetBlockProfileRate(blockProfileRate)
	}
	stopHeap := p.heapOnSignal()
	return func() error {
		stopHeap()
		var errs []error
		if cpuFile != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpuFile.Close())
		}
		if p.allocs != "" {
			runtime.GC() // the profile is as of the last collection: make it now
		}
		for _, w := range []struct{ name, file string }{{"allocs", p.allocs}, {"mutex", p.mutex}, {"block", p.block}} {
			if w.file != "" {
				errs = append(errs, writeProfile(w.name, w.file))
			}
		}
		return errors.Join(errs...)
	}, nil
}

// heapSampleBytes is the heap profile's sampling with -heapprofile.
const heapSampleBytes = 4096

// writeGoroutines writes the goroutines grouped by stack, as text.
func writeGoroutines(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("goroutine profile: %w", err)
	}
	err = pprof.Lookup("goroutine").WriteTo(f, 1)
	return errors.Join(err, f.Close())
}

func writeProfile(name, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("%s profile: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s profile: %w", name, err)
	}
	return nil
}

// heapOnSignal writes the heap profile (after a collection) to heap.N and
// the goroutines, grouped by stack, to heap.N.goroutines at the N-th
// SIGUSR1, until the returned stop is called. It samples an allocation
// every 4 KiB rather than 512 KiB, so that a call's few objects show.
func (p profiles) heapOnSignal() (stop func()) {
	if p.heap == "" {
		return func() {}
	}
	runtime.MemProfileRate = heapSampleBytes
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		for n := 1; ; n++ {
			select {
			case <-sig:
			case <-done:
				return
			}
			runtime.GC()
			if err := writeProfile("heap", fmt.Sprintf("%s.%d", p.heap, n)); err != nil {
				fmt.Fprintln(os.Stderr, "wagateway:", err)
			}
			if err := writeGoroutines(fmt.Sprintf("%s.%d.goroutines", p.heap, n)); err != nil {
				fmt.Fprintln(os.Stderr, "wagateway:", err)
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}
