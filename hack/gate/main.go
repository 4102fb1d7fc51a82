//go:build linux

// Command gate runs a test package several times in a row, each run a fresh
// `go test` process (so the e2e package builds and starts its own control
// plane every time, as `make verify` does), optionally beside CPU-bound
// processes that load the machine, and prints a table per test: how often it
// passed, failed or was skipped, and its median and longest time. A failing
// test's output (its seed included) is printed as it happens; every run's
// `go test -json` stream is kept in -dir.
//
// It answers "is the gate trustworthy?": a test that fails once in N runs
// under load blocks every landing.
//
//	go run ./hack/gate -runs 10 -load 3 ./hack/e2e
//	go run ./hack/gate -runs 20 -load 3 -run '^TestChaos' ./hack/e2e
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// tally is what one test did over the runs.
type tally struct {
	pass, fail, skip int
	times            []time.Duration
	failedIn         []int
}

func main() {
	runs := flag.Int("runs", 10, "how many runs in a row")
	load := flag.Int("load", 0, "CPU-bound processes to run beside the tests")
	run := flag.String("run", "", "go test -run")
	timeout := flag.Duration("timeout", 60*time.Minute, "go test -timeout, per run")
	dir := flag.String("dir", "", "where to keep each run's go test -json output (default: a new temporary directory)")
	race := flag.Bool("race", false, "go test -race")
	stop := flag.Bool("stop-on-failure", false, "stop after the first run with a failure")
	flag.Parse()
	pkgs := flag.Args()
	if len(pkgs) == 0 || *runs < 1 || *load < 0 {
		fmt.Fprintln(os.Stderr, "usage: gate [-runs N] [-load K] [-run REGEXP] PACKAGE...")
		os.Exit(2)
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "gate-")
		if err != nil {
			fatal(err)
		}
		*dir = d
	} else if err := os.MkdirAll(*dir, 0o755); err != nil {
		fatal(err)
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stopLoad := startLoad(*load)
	defer stopLoad()

	tallies := map[string]*tally{}
	var badRuns []int
	began := time.Now()
	fmt.Printf("gate: %d runs of %s, %d CPU-bound processes beside them, output in %s\n", *runs, strings.Join(pkgs, " "), *load, *dir)
	for i := 1; i <= *runs && ctx.Err() == nil; i++ {
		args := []string{"test", "-json", "-count=1", "-timeout", timeout.String()}
		if *race {
			args = append(args, "-race")
		}
		if *run != "" {
			args = append(args, "-run", *run)
		}
		args = append(args, pkgs...)
		start := time.Now()
		stopSampling := sampleLoad()
		ok, err := runOnce(ctx, i, args, filepath.Join(*dir, fmt.Sprintf("run-%02d.json", i)), tallies)
		mean, peak := stopSampling()
		if err != nil {
			fatal(err)
		}
		verdict := "ok"
		if !ok {
			verdict = "FAILED"
			badRuns = append(badRuns, i)
		}
		fmt.Printf("gate: run %d/%d %s in %s, load average (1 min) mean %.1f, peak %.1f on %d CPUs\n",
			i, *runs, verdict, time.Since(start).Round(time.Second), mean, peak, runtime.NumCPU())
		if !ok && *stop {
			break
		}
	}
	printTable(os.Stdout, tallies)
	fmt.Printf("gate: %d runs in %s; runs with a failure: %v\n", *runs, time.Since(began).Round(time.Second), badRuns)
	if len(badRuns) > 0 || ctx.Err() != nil {
		os.Exit(1)
	}
}

// runOnce runs go test once, keeps its JSON stream in out, adds what each
// top-level test did to tallies and prints the output of tests that fail.
// It reports whether the run passed (go test exited 0).
func runOnce(ctx context.Context, i int, args []string, out string, tallies map[string]*tally) (bool, error) {
	f, err := os.Create(out)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "SYMPOZIUM_E2E=1") // the end-to-end tests run only with it
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	outputs := map[string][]string{} // test → its output lines so far
	sc := bufio.NewScanner(io.TeeReader(stdout, f))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev event
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		top := ev.Test
		if j := strings.IndexByte(top, '/'); j >= 0 {
			top = top[:j]
		}
		key := ev.Package + "." + top
		switch {
		case ev.Action == "output" && ev.Test == "":
			// Package output: TestMain's setup, the package verdict.
			if strings.HasPrefix(ev.Output, "FAIL") || strings.Contains(ev.Output, "--- FAIL") || strings.Contains(ev.Output, "setup failed") {
				fmt.Printf("gate: run %d: %s: %s", i, ev.Package, ev.Output)
			}
		case ev.Action == "output":
			outputs[key] = append(outputs[key], ev.Output)
		case ev.Test != "" && ev.Test == top && (ev.Action == "pass" || ev.Action == "fail" || ev.Action == "skip"):
			t := tallies[key]
			if t == nil {
				t = &tally{}
				tallies[key] = t
			}
			switch ev.Action {
			case "pass":
				t.pass++
				t.times = append(t.times, time.Duration(ev.Elapsed*float64(time.Second)))
			case "fail":
				t.fail++
				t.failedIn = append(t.failedIn, i)
				t.times = append(t.times, time.Duration(ev.Elapsed*float64(time.Second)))
				fmt.Printf("gate: run %d: --- FAIL %s\n%s", i, key, strings.Join(outputs[key], ""))
			case "skip":
				t.skip++
			}
			delete(outputs, key)
		}
	}
	if err := sc.Err(); err != nil {
		return false, err
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return err == nil, nil
}

// sampleLoad reads the machine's one-minute load average every 10 s until
// the returned function is called, which reports its mean and peak: how
// loaded the machine really was during a run (the CPU-bound processes of
// -load plus whatever else ran).
func sampleLoad() func() (mean, peak float64) {
	done := make(chan struct{})
	result := make(chan [2]float64, 1)
	go func() {
		var sum, peak float64
		var n int
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			if l, ok := loadAverage(); ok {
				sum += l
				n++
				peak = max(peak, l)
			}
			select {
			case <-done:
				if n > 0 {
					sum /= float64(n)
				}
				result <- [2]float64{sum, peak}
				return
			case <-tick.C:
			}
		}
	}()
	return func() (float64, float64) {
		close(done)
		r := <-result
		return r[0], r[1]
	}
}

// loadAverage is the first field of /proc/loadavg.
func loadAverage() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return l, err == nil
}

func printTable(w io.Writer, tallies map[string]*tally) {
	names := make([]string, 0, len(tallies))
	for n := range tallies {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "test\tpassed\tfailed\tskipped\tmedian\tlongest\tfailed in runs")
	for _, n := range names {
		t := tallies[n]
		med, longest := "-", "-"
		if len(t.times) > 0 {
			slices.Sort(t.times)
			med = t.times[len(t.times)/2].Round(100 * time.Millisecond).String()
			longest = t.times[len(t.times)-1].Round(100 * time.Millisecond).String()
		}
		failed := "-"
		if len(t.failedIn) > 0 {
			failed = fmt.Sprint(t.failedIn)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", n, t.pass, t.fail, t.skip, med, longest, failed)
	}
	_ = tw.Flush()
}

// startLoad starts k CPU-bound processes (each a copy of this program in
// its busy mode, so nothing outside Go is needed) and returns what stops
// them.
func startLoad(k int) func() {
	if k == 0 {
		return func() {}
	}
	self, err := os.Executable()
	if err != nil {
		fatal(err)
	}
	var procs []*exec.Cmd
	for range k {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), busyEnv+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			fatal(err)
		}
		procs = append(procs, cmd)
	}
	return func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
}

// busyEnv makes this program spin on one core until it is killed (at the
// latest when its parent dies: Pdeathsig).
const busyEnv = "GATE_BUSY_LOOP"

func init() {
	if os.Getenv(busyEnv) == "" {
		return
	}
	x := uint64(1)
	for {
		x = x*6364136223846793005 + 1442695040888963407
		if x == 0 {
			fmt.Println(x)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "gate:", err)
	os.Exit(2)
}
