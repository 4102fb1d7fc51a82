package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFindMarker(t *testing.T) {
	log := []byte("2026-12-05T16:00:00.100000000Z agent: service account token: none\n" +
		"2026-12-05T16:00:00.250000001Z agent: warm: waiting for a task in /var/run/sympozium/podinfo/annotations\n" +
		"2026-12-05T16:00:03.5Z agent: starting run r of agent default, model gpt-4o\n" +
		"2026-12-05T16:00:04Z agent: starting run again\n")
	at, err := findMarker(log, startMarker)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 12, 5, 16, 0, 3, 500_000_000, time.UTC), at.UTC(), "the first matching line")
	at, err = findMarker(log, waitMarker)
	require.NoError(t, err)
	assert.Equal(t, 250_000_001, at.Nanosecond())
	_, err = findMarker(log, "agent: done")
	assert.ErrorContains(t, err, "no line")
	_, err = findMarker([]byte("not-a-time agent: starting run\n"), startMarker)
	assert.Error(t, err)
}
