// Package schedule decides what a SympoziumSchedule does at a point in
// time: which run to create or cancel, the status to write, the events to
// record and when to wake next. It is pure: no I/O, no clock, no
// client-go; the controller (pkg/controller/schedule) reads the cache and
// the clock, calls Decide and carries its decision out.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser parses as sympozium's controller parses (25c0bb2,
// internal/controller/sympoziumschedule_controller.go:71): exactly five
// fields, no seconds, no descriptors; a CRON_TZ= or TZ= prefix sets the
// zone. The same module and options, so every schedule sympozium admitted
// ticks at the same times here.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Cron is a parsed schedule.
type Cron struct {
	spec *cron.SpecSchedule
}

// Parse parses expr in the zone timeZone (empty: UTC, unless expr starts
// with CRON_TZ= or TZ=). Its error is the parser's message, for the
// schedule's condition.
func Parse(expr, timeZone string) (Cron, error) {
	prefixed := strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=")
	if timeZone != "" && prefixed {
		return Cron{}, fmt.Errorf("schedule %q has a time zone prefix and spec.timeZone is set: use one of them", expr)
	}
	var loc *time.Location
	if timeZone != "" {
		l, err := time.LoadLocation(timeZone)
		if err != nil {
			return Cron{}, fmt.Errorf("invalid timeZone %q: %w", timeZone, err)
		}
		loc = l
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return Cron{}, fmt.Errorf("invalid schedule %q: %w", expr, err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok { // only descriptors (@every) give another type, and they are not enabled
		return Cron{}, fmt.Errorf("invalid schedule %q: not a cron expression", expr)
	}
	switch {
	case loc != nil:
		spec.Location = loc
	case !prefixed:
		// The library's default is the process's zone (sympozium's too):
		// a controller in a container runs in UTC; say so for every one.
		spec.Location = time.UTC
	}
	return Cron{spec: spec}, nil
}

// Next is the first tick strictly after t, or the zero time when there is
// none within five years (the library gives up there: "0 0 30 2 *").
func (c Cron) Next(t time.Time) time.Time { return c.spec.Next(t) }

// Latest is the latest tick in (after, now], or false when there is none.
// It never walks tick by tick over a long gap (a minutely schedule missed
// for a year): it widens a window back from now, doubling it, until the
// window holds a tick, then walks that window only.
func (c Cron) Latest(after, now time.Time) (time.Time, bool) {
	if !now.After(after) {
		return time.Time{}, false
	}
	first := c.Next(after)
	if first.IsZero() || first.After(now) {
		return time.Time{}, false
	}
	w := time.Minute
	for {
		start := now.Add(-w)
		if !start.After(after) {
			start = after
		}
		if t := c.Next(start); !t.IsZero() && !t.After(now) {
			latest := t
			for {
				n := c.Next(latest)
				if n.IsZero() || n.After(now) {
					return latest, true
				}
				latest = n
			}
		}
		if start.Equal(after) { // unreachable: first is in (after, now]
			return first, true
		}
		w *= 2
	}
}
