// Package memstat measures the live heap, for the benchmarks that report
// memory per grain.
package memstat

import "runtime"

// LiveHeap is the heap in use after two full collections (the second
// frees what the first's finalizers released).
func LiveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
