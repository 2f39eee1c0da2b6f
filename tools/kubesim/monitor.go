package main

// `kubesim monitor`: traffic that proves (or disproves) "no outage" for the tests. From every node's
// namespace it opens a new TCP connection and sends one HTTP request every --interval to each
// --target (a Service's ClusterIP:port, reached through that node's kube-proxy rules, as a
// hostNetwork client would), and keeps long-lived HTTP/1.1 connections to each --long-lived
// address, one request per interval on the same connection, that must never break. It runs until
// its stdin closes, then prints one JSON report on stdout. A failed request is reported with its
// time, node, error and the endpoints its Service had at that moment.
//
// `kubesim sweep --dir DIR`: removes the namespaces a cluster in DIR left behind.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"example.invalid/kubesim/dataplane"
)

func runSweep(args []string) int {
	fs := flag.NewFlagSet("sweep", flag.ExitOnError)
	dir := fs.String("dir", "", "kubesim's data directory")
	_ = fs.Parse(args)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "kubesim sweep: --dir is required")
		return 2
	}
	n, err := dataplane.Sweep(dataplane.Prefix(*dir))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubesim sweep: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "kubesim sweep: removed %d network namespaces of %s\n", n, *dir)
	return 0
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type sampleFailure struct {
	AtMs   int64  `json:"at_ms"`
	Wall   string `json:"wall"` // to line it up with kubesim's and kube-proxy's logs
	Node   string `json:"node"`
	Target string `json:"target"`
	Local  string `json:"local,omitempty"` // the failed connection's source address, when it opened
	Error  string `json:"error"`
	// The Service's endpoints at that moment ("ADDRESS CONDITIONS"), from its EndpointSlices.
	Endpoints []string `json:"endpoints"`
}

type targetReport struct {
	Name         string   `json:"name"`
	Address      string   `json:"address"`
	Requests     int      `json:"requests"`
	Failures     int      `json:"failures"`
	LongestGapMs int64    `json:"longest_gap_ms"`
	Backends     []string `json:"backends"`
}

type longLivedReport struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Exchanges int    `json:"exchanges"`
	Broken    bool   `json:"broken"`
	Error     string `json:"error,omitempty"`
}

type monitorReport struct {
	DurationMs int64             `json:"duration_ms"`
	Nodes      []string          `json:"nodes"`
	Targets    []*targetReport   `json:"targets"`
	Failures   []sampleFailure   `json:"failures"`
	LongLived  []longLivedReport `json:"long_lived"`
}

type monitorNode struct {
	name string
	ns   netns.NsHandle
}

func runMonitor(args []string) int {
	fs := flag.NewFlagSet("monitor", flag.ExitOnError)
	dir := fs.String("dir", "", "kubesim's data directory (reads DIR/dataplane.json)")
	var targets, longLived listFlag
	fs.Var(&targets, "target", "NAME=HOST:PORT[/PATH]: a new connection and one HTTP GET per interval from every node (repeatable)")
	fs.Var(&longLived, "long-lived", "HOST:PORT of an agnhost netexec server: one kept-alive connection from every node, GET /echo per interval (repeatable)")
	interval := fs.Duration("interval", 100*time.Millisecond, "sampling interval")
	timeout := fs.Duration("timeout", time.Second, "per-request timeout")
	_ = fs.Parse(args)
	nodes, err := loadMonitorNodes(*dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubesim monitor: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	book, err := followEndpoints(ctx, filepath.Join(*dir, "kubeconfig"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "kubesim monitor: endpoints: %v\n", err)
		return 2
	}
	m := &monitor{start: time.Now(), interval: *interval, timeout: *timeout, book: book, report: &monitorReport{Failures: []sampleFailure{}, LongLived: []longLivedReport{}}}
	var wg sync.WaitGroup
	for _, n := range nodes {
		m.report.Nodes = append(m.report.Nodes, n.name)
	}
	for _, t := range targets {
		name, rest, ok := strings.Cut(t, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "kubesim monitor: --target %q: want NAME=HOST:PORT[/PATH]\n", t)
			return 2
		}
		addr, path, _ := strings.Cut(rest, "/")
		tr := &targetReport{Name: name, Address: addr, Backends: []string{}}
		m.report.Targets = append(m.report.Targets, tr)
		for _, n := range nodes {
			wg.Add(1)
			go func(n monitorNode) { defer wg.Done(); m.sample(ctx, n, tr, "/"+path) }(n)
		}
	}
	for _, addr := range longLived {
		for _, n := range nodes {
			wg.Add(1)
			go func(n monitorNode, addr string) { defer wg.Done(); m.keep(ctx, n, addr) }(n, addr)
		}
	}
	fmt.Fprintln(os.Stderr, "kubesim monitor: running")
	_, _ = io.Copy(io.Discard, os.Stdin)
	cancel()
	wg.Wait()
	m.report.DurationMs = time.Since(m.start).Milliseconds()
	for _, t := range m.report.Targets {
		sort.Strings(t.Backends)
	}
	b, _ := json.MarshalIndent(m.report, "", "  ")
	fmt.Println(string(b))
	return 0
}

func loadMonitorNodes(dir string) ([]monitorNode, error) {
	b, err := os.ReadFile(filepath.Join(dir, "dataplane.json"))
	if err != nil {
		return nil, fmt.Errorf("%w (is the cluster running with --dataplane?)", err)
	}
	var info struct {
		Nodes []dataplane.Node `json:"nodes"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, err
	}
	var out []monitorNode
	for _, n := range info.Nodes {
		h, err := netns.GetFromName(n.Netns)
		if err != nil {
			return nil, fmt.Errorf("node %s: namespace %s: %w", n.Name, n.Netns, err)
		}
		out = append(out, monitorNode{name: n.Name, ns: h})
	}
	return out, nil
}

type monitor struct {
	start    time.Time
	interval time.Duration
	timeout  time.Duration
	mu       sync.Mutex
	report   *monitorReport
	book     *endpointBook
}

// sample sends one request per interval on a new connection, each in its own goroutine so that a
// slow answer does not delay the next sample.
func (m *monitor) sample(ctx context.Context, n monitorNode, t *targetReport, path string) {
	client := dataplane.HTTPClientIn(n.ns, m.timeout)
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-tick.C:
		}
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			body, local, err := get(client, "http://"+t.Address+path)
			var endpoints []string
			if err != nil {
				endpoints = m.book.at(t.Address)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			t.Requests++
			if err != nil {
				t.Failures++
				if len(m.report.Failures) < 200 {
					m.report.Failures = append(m.report.Failures, sampleFailure{AtMs: at.Sub(m.start).Milliseconds(), Wall: at.UTC().Format("15:04:05.000"), Node: n.name, Target: t.Name, Local: local, Error: err.Error(), Endpoints: endpoints})
				}
				return
			}
			if gap := at.Sub(lastOK).Milliseconds(); gap > t.LongestGapMs {
				t.LongestGapMs = gap
			}
			if at.After(lastOK) {
				lastOK = at
			}
			if !contains(t.Backends, body) && len(t.Backends) < 100 {
				t.Backends = append(t.Backends, body)
			}
		}(time.Now())
	}
}

// get returns the body of one GET and the connection's local address (empty if none opened).
func get(c *http.Client, url string) (string, string, error) {
	local := ""
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr().String() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	if err != nil {
		return "", "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", local, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", local, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", local, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return strings.TrimSpace(string(b)), local, nil
}

// keep holds one connection to addr and exchanges one request per interval until ctx ends; the
// first error breaks it for good (the conn-disrupt way: no reconnects).
func (m *monitor) keep(ctx context.Context, n monitorNode, addr string) {
	r := longLivedReport{From: n.name, To: addr}
	defer func() {
		m.mu.Lock()
		m.report.LongLived = append(m.report.LongLived, r)
		m.mu.Unlock()
	}()
	c, err := dataplane.DialIn(ctx, n.ns, addr, m.timeout)
	if err != nil {
		r.Broken, r.Error = true, "connect: "+err.Error()
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		_ = c.SetDeadline(time.Now().Add(m.timeout))
		msg := fmt.Sprintf("%s-%d", n.name, i)
		if _, err := fmt.Fprintf(c, "GET /echo?msg=%s HTTP/1.1\r\nHost: %s\r\n\r\n", msg, addr); err != nil {
			r.Broken, r.Error = true, err.Error()
			return
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			r.Broken, r.Error = true, err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != msg {
			r.Broken, r.Error = true, fmt.Sprintf("echo %q, want %q", b, msg)
			return
		}
		r.Exchanges++
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
