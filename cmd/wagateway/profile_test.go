package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// The profiles asked for are written at stop, and hold what ran: here a
// contended mutex, a blocked channel receive and allocations.
func TestProfilesWritten(t *testing.T) {
	dir := t.TempDir()
	p := profiles{
		cpu:    filepath.Join(dir, "cpu.prof"),
		allocs: filepath.Join(dir, "allocs.prof"),
		mutex:  filepath.Join(dir, "mutex.prof"),
		block:  filepath.Join(dir, "block.prof"),
	}
	stop, err := p.start()
	if err != nil {
		t.Fatal(err)
	}
	contendAndBlock()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{p.mutex, p.block} {
		if !profileMentions(t, f, "contendAndBlock") {
			t.Errorf("%s: no sample from contendAndBlock", filepath.Base(f))
		}
	}
	for _, f := range []string{p.cpu, p.allocs} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: missing or empty (%v)", filepath.Base(f), err)
		}
	}
}

// contendAndBlock holds a mutex another goroutine waits for, and waits on
// a channel, each for some milliseconds.
func contendAndBlock() {
	var mu sync.Mutex
	var wg sync.WaitGroup
	ch := make(chan struct{})
	mu.Lock()
	wg.Add(1)
	go func() {
		defer wg.Done()
		mu.Lock() // contended: the holder sleeps
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		close(ch)
	}()
	time.Sleep(5 * time.Millisecond)
	mu.Unlock()
	<-ch // blocked until the other goroutine closes it
	wg.Wait()
}

// profileMentions says whether a gzipped pprof file names fn (function
// names are plain strings in the profile's string table).
func profileMentions(t *testing.T, file, fn string) bool {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return bytes.Contains(b, []byte(fn))
}
