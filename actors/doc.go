// Package actors is the parent of one package per grain kind. Each keeps
// its domain rules in plain Go (testable without a cluster or a database)
// and a thin grain type that loads, fences, persists and replies.
package actors
