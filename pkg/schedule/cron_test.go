package schedule

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		expr, tz string
		from     time.Time
		next     time.Time
		err      string
	}{
		{expr: "0 * * * *", from: at("10:30"), next: at("11:00")},
		{expr: "*/5 * * * *", from: at("10:30"), next: at("10:35")},
		// UTC when no zone is given, whatever the process's zone.
		{expr: "0 9 * * *", from: at("10:30"), next: at("09:00").AddDate(0, 0, 1)},
		{expr: "0 9 * * *", tz: "Europe/Paris", from: at("06:30"), next: at("08:00")},
		{expr: "CRON_TZ=Europe/Paris 0 9 * * *", from: at("06:30"), next: at("08:00")},
		{expr: "TZ=America/New_York 0 9 * * *", from: at("06:30"), next: at("14:00")},
		{expr: "0 9 * * *", tz: "Mars/Olympus", err: `invalid timeZone "Mars/Olympus": unknown time zone Mars/Olympus`},
		{expr: "CRON_TZ=UTC 0 9 * * *", tz: "UTC", err: "has a time zone prefix and spec.timeZone is set"},
		// sympozium's parser: five fields exactly, no descriptors.
		{expr: "0 0 * * * *", err: `invalid schedule "0 0 * * * *": expected exactly 5 fields, found 6: [0 0 * * * *]`},
		{expr: "@hourly", err: `invalid schedule "@hourly": parser does not accept descriptors: @hourly`},
		{expr: "61 * * * *", err: `invalid schedule "61 * * * *": end of range (61) above maximum (59): 61`},
		{expr: "", err: `invalid schedule "": empty spec string`},
		{expr: "CRON_TZ=Nowhere/Else 0 * * * *", err: `provided bad location Nowhere/Else`},
	} {
		t.Run(tc.expr+"/"+tc.tz, func(t *testing.T) {
			c, err := Parse(tc.expr, tc.tz)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.next.UTC(), c.Next(tc.from).UTC())
		})
	}
}

func TestNeverTicks(t *testing.T) {
	c, err := Parse("0 0 30 2 *", "")
	require.NoError(t, err)
	assert.True(t, c.Next(at("10:00")).IsZero())
	_, ok := c.Latest(at("10:00").AddDate(-1, 0, 0), at("10:00"))
	assert.False(t, ok)
}

func TestLatest(t *testing.T) {
	minutely, err := Parse("* * * * *", "")
	require.NoError(t, err)
	weekdays, err := Parse("0 9 * * 1-5", "")
	require.NoError(t, err)
	hour9, err := Parse("* 9 * * *", "")
	require.NoError(t, err)
	now := at("10:30:20") // a Sunday (2026-03-01)
	for _, tc := range []struct {
		name   string
		c      Cron
		after  time.Time
		want   time.Time
		wantOK bool
	}{
		{"none yet", minutely, at("10:30"), time.Time{}, false},
		{"one due", minutely, at("10:29"), at("10:30"), true},
		{"many missed: the latest", minutely, at("09:00"), at("10:30"), true},
		{"a year of minutes", minutely, now.AddDate(-1, 0, 0), at("10:30"), true},
		{"after is now", minutely, now, time.Time{}, false},
		{"after is later", minutely, now.Add(time.Hour), time.Time{}, false},
		{"weekdays over a weekend", weekdays, at("08:00").AddDate(0, 0, -7), at("09:00").AddDate(0, 0, -2), true},
		{"dense then none", hour9, at("00:00"), at("09:59"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.c.Latest(tc.after, now)
			assert.Equal(t, tc.wantOK, ok)
			assert.True(t, tc.want.Equal(got), "got %s want %s", got, tc.want)
			if ok && now.Sub(tc.after) < 30*24*time.Hour { // cross-check by walking
				w := tc.c.Next(tc.after)
				var last time.Time
				for !w.After(now) {
					last = w
					w = tc.c.Next(w)
				}
				assert.True(t, last.Equal(got))
			}
		})
	}
}

// at is a time on 2026-03-01 (a Sunday), UTC: "15:04" or "15:04:05".
func at(hm string) time.Time {
	layout := "15:04"
	if len(hm) > 5 {
		layout = "15:04:05"
	}
	t, err := time.Parse(layout, hm)
	if err != nil {
		panic(err)
	}
	return time.Date(2026, 3, 1, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
}
