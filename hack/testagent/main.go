// Command testagent is an agent for a real node that does what kwok's
// simulation of the local control plane does (hack/localcp/stages.yaml),
// from the same SIM_* environment variables, so a run behaves alike on both:
//
//	SIM_DURATION   Go duration it works before it exits (default, and when
//	               unparsable, 1s)
//	SIM_EXIT_CODE  its exit code (default, and when unparsable, 0)
//	SIM_MESSAGE    its report: written to the termination message
//	               (/dev/termination-log) and printed on stdout between the
//	               result markers (__SYMPOZIUM_RESULT__…__SYMPOZIUM_END__), as
//	               sympozium's agent runners do
//
// As with kwok, a server keeps serving and a sidecar keeps running unless
// SIM_DURATION or SIM_EXIT_CODE asks them to exit: the agent of a
// server-mode run (its pod is its Deployment's, named <run>-server-…) and a
// container without TASK (a skill sidecar) run until SIGTERM, then exit 0.
// SIM_SERVE=1 asks any of them to do so.
//
// A warm-pool agent (/var/run/sympozium/podinfo/annotations exists: the
// downward API volume of the warm-pool contract) waits until that file holds
// the annotation sympozium.ai/task, then follows the SIM_* values of the JSON
// object in the annotation sympozium.ai/env instead of its environment.
//
// On SIGTERM it says so, writes {"status":"error","error":"terminated"} as
// its report unless SIM_TERM_GRACE delays that (it then keeps working that
// long first), and exits 143, as an agent stopped by its pod's deletion does.
// A server's agent, a sidecar, or any container with SIM_HTTP_PORT answers
// GET /healthz with 200 on :8080 (SIM_HTTP_PORT) the whole time, so a
// readiness probe can find it. It says whether it holds a ServiceAccount
// token; with SIM_API_PROBE (space-separated API paths) it GETs each path
// with that token every second and logs "api GET <path> <status>" whenever
// a status changes: what a skill sidecar's token may do, as the API server
// answers.
//
// With the argument "pause" (or run as /pause) it is the pod sandbox's pause
// process instead: it reaps children and exits on SIGTERM or SIGINT.
//
// The real agent-sandbox warm pool, kwok and this agent read the same
// values; a SIM_* variable kwok reads that this agent cannot honour on a
// real node (SIM_WAITING_REASON, SIM_START_DELAY: the kubelet decides when a
// container starts) is ignored.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	markerStart     = "__SYMPOZIUM_RESULT__"
	markerEnd       = "__SYMPOZIUM_END__"
	terminationPath = "/dev/termination-log"
	podInfoFile     = "/var/run/sympozium/podinfo/annotations"
	tokenDir        = "/var/run/secrets/kubernetes.io/serviceaccount"
	annotationTask  = "sympozium.ai/task"
	annotationEnv   = "sympozium.ai/env"
)

func main() {
	if filepath.Base(os.Args[0]) == "pause" || (len(os.Args) > 1 && os.Args[1] == "pause") {
		pause()
		return
	}
	os.Exit(agent())
}

// pause is a pod sandbox's process: PID 1 of the pod, it reaps the
// children re-parented to it and ends on SIGTERM or SIGINT.
func pause() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		return
	}
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, "agent: "+format+"\n", args...)
}

func agent() int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	if os.Getenv("TASK") == "" || serverPod() || os.Getenv("SIM_HTTP_PORT") != "" {
		serveHealth() // a server's or a sidecar's: the agent of a task pod leaves the port to them
	}
	if _, err := os.Stat(filepath.Join(tokenDir, "token")); err == nil {
		say("service account token: present")
	} else {
		say("service account token: none")
	}
	if paths := strings.Fields(os.Getenv("SIM_API_PROBE")); len(paths) > 0 {
		go probeAPI(paths)
	}

	env := os.Getenv
	task := os.Getenv("TASK")
	if _, err := os.Stat(podInfoFile); err == nil {
		say("warm: waiting for a task in %s", podInfoFile)
		annotations, stopped := waitForTask(term)
		if stopped {
			return terminated("before a task came")
		}
		task = annotations[annotationTask]
		runEnv := map[string]string{}
		if err := json.Unmarshal([]byte(annotations[annotationEnv]), &runEnv); err != nil {
			say("the annotation %s is not a JSON object: %v", annotationEnv, err)
		}
		env = func(k string) string { return runEnv[k] }
		say("warm: got run %s", runEnv["AGENT_RUN_ID"])
	}

	if env("SIM_DURATION") == "" && env("SIM_EXIT_CODE") == "" && task == "" || os.Getenv("SIM_SERVE") == "1" || serverPod() && env("SIM_DURATION") == "" && env("SIM_EXIT_CODE") == "" {
		say("serving until SIGTERM")
		<-term
		say("got SIGTERM, stopping")
		return 0
	}
	duration, err := time.ParseDuration(env("SIM_DURATION"))
	if err != nil {
		duration = time.Second
	}
	code, err := strconv.Atoi(env("SIM_EXIT_CODE"))
	if err != nil {
		code = 0
	}
	message := env("SIM_MESSAGE")
	say("starting run %s of agent %s, model %s", os.Getenv("AGENT_RUN_ID"), os.Getenv("AGENT_ID"), os.Getenv("MODEL_NAME"))
	say("task: %s", oneLine(task, 200))
	say("working for %s", duration)
	select {
	case <-time.After(duration):
	case <-term:
		return terminated("while working")
	}
	if message != "" {
		if err := os.WriteFile(terminationPath, []byte(message), 0o644); err != nil {
			say("cannot write the termination message: %v", err)
		}
		fmt.Fprintf(os.Stdout, "%s%s%s\n", markerStart, message, markerEnd)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "agent: error: exiting with code %d\n", code)
	} else {
		say("done")
	}
	return code
}

// serverPod reports whether this is the pod of a server-mode run: its
// Deployment names it <run>-server-<hash>-<suffix>.
func serverPod() bool {
	host, _ := os.Hostname()
	run := os.Getenv("AGENT_RUN_ID")
	return run != "" && strings.HasPrefix(host, run+"-server-")
}

// terminated reports a stop by SIGTERM and returns 143 (128 + SIGTERM),
// after SIM_TERM_GRACE if set (an agent finishing its work in its grace).
func terminated(when string) int {
	say("got SIGTERM %s", when)
	if d, err := time.ParseDuration(os.Getenv("SIM_TERM_GRACE")); err == nil {
		time.Sleep(d)
	}
	msg := `{"status":"error","error":"terminated by SIGTERM"}`
	_ = os.WriteFile(terminationPath, []byte(msg), 0o644)
	fmt.Fprintf(os.Stdout, "%s%s%s\n", markerStart, msg, markerEnd)
	return 143
}

// waitForTask polls the downward API file until it holds the task
// annotation, and returns the pod's annotations; stopped when SIGTERM came
// first.
func waitForTask(term <-chan os.Signal) (map[string]string, bool) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if a := readAnnotations(podInfoFile); a[annotationTask] != "" {
			return a, false
		}
		select {
		case <-term:
			return nil, true
		case <-t.C:
		}
	}
}

// readAnnotations parses the downward API's rendering of a map: one
// key="value" line per entry, the value quoted as Go does.
func readAnnotations(path string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		}
		out[k] = v
	}
	return out
}

func serveHealth() {
	port := os.Getenv("SIM_HTTP_PORT")
	if port == "" {
		port = "8080"
	}
	l, err := net.Listen("tcp", ":"+port)
	if err != nil {
		say("not serving /healthz: %v", err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	go func() { _ = http.Serve(l, mux) }()
}

// probeAPI GETs each path from the API server with the pod's token every
// second, logging each path's status when it changes.
func probeAPI(paths []string) {
	last := map[string]string{}
	for {
		client, token := apiClient()
		for _, p := range paths {
			status := "no token"
			if client != nil {
				req, _ := http.NewRequest(http.MethodGet, "https://"+net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))+p, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				if resp, err := client.Do(req); err != nil {
					status = "error " + err.Error()
				} else {
					status = strconv.Itoa(resp.StatusCode)
					resp.Body.Close()
				}
			}
			if last[p] != status {
				say("api GET %s %s", p, status)
				last[p] = status
			}
		}
		time.Sleep(time.Second)
	}
}

func apiClient() (*http.Client, string) {
	token, err := os.ReadFile(filepath.Join(tokenDir, "token"))
	if err != nil {
		return nil, ""
	}
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(filepath.Join(tokenDir, "ca.crt")); err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: nil,
	}}, strings.TrimSpace(string(token))
}

func oneLine(s string, max int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
