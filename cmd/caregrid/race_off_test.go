//go:build !race

package main

// raceEnabled says whether this test binary, and so every node it starts,
// runs under the race detector.
const raceEnabled = false
