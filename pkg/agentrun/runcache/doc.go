// Package runcache is the memory format of the controller's caches: what
// the informers keep of each object (TrimForCache), the record a finished
// run is kept as (FinishedRun), and what an instance's history policy reads
// and decides over the runs it keeps (HistoryRun, Count, Prune, Expire).
//
// It sits one floor above the phase state machine, which reads plain API
// objects and never this package: phase's cached_test.go checks, for every
// backend's lifecycle, that objects as TrimForCache keeps them decide as
// the full ones do. Like phase it is pure: no client-go, no klog, no clock
// of its own.
package runcache
