package main

// Fault-injecting HTTPS reverse proxy in front of kube-apiserver (--fault-proxy), for client
// robustness tests. Faults come from DIR/faults.json (re-read when its mtime/size changes, missing
// file = no faults); counters go to DIR/faults-stats.json. See README "Fault proxy".

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// faultConfig is the schema of DIR/faults.json.
type faultConfig struct {
	ErrorRate     float64  `json:"errorRate"`
	Codes         []int    `json:"codes"`
	DropRate      float64  `json:"dropRate"`
	DelayMs       int      `json:"delayMs"`
	OutageSeconds float64  `json:"outageSeconds"`
	Methods       []string `json:"methods"`
	PathContains  string   `json:"pathContains"`
	Seed          *int64   `json:"seed"`
	// Landed: an error is answered only after the request was forwarded and
	// took effect (a write whose answer was lost).
	Landed bool `json:"landed"`
	// Limit: at most this many errors per (re)load; 0 = no limit.
	Limit int `json:"limit"`
}

type faultStats struct {
	Requests int64            `json:"requests"`
	Errors   int64            `json:"errors"`
	Drops    int64            `json:"drops"`
	Delayed  int64            `json:"delayed"`
	ByCode   map[string]int64 `json:"byCode"`
	// OutageRefused counts the requests dropped because an outage was on (also in Drops), so a
	// test can show its outage met traffic; OutageCut the open connections an outage closed.
	OutageRefused int64 `json:"outageRefused"`
	OutageCut     int64 `json:"outageCut"`
}

type faultProxy struct {
	dir       string
	cfgPath   string
	statsPath string
	verbose   bool
	rp        *httputil.ReverseProxy

	mu       sync.Mutex
	cfg      *faultConfig // nil = no faults
	rng      *mrand.Rand
	modTime  time.Time
	size     int64
	exists   bool
	loadedAt time.Time
	stats    faultStats
	injected int // errors injected since the last (re)load, for Limit
	dirty    bool
	conns    map[net.Conn]struct{}
}

// startFaultProxy starts the proxy on 127.0.0.1:<free port> and writes DIR/kubeconfig-faulty.
// It returns the proxy URL and a stop function that writes the final stats.
func startFaultProxy(ctx context.Context, dir string, p *pki, restCfg *rest.Config, upstream string, verbose bool) (string, func(), error) {
	up, err := url.Parse(upstream)
	if err != nil {
		return "", nil, err
	}
	cfg := rest.CopyConfig(restCfg)
	cfg.UserAgent = "" // keep the client's own User-Agent
	cfg.QPS, cfg.Burst = -1, 0
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return "", nil, err
	}
	fp := &faultProxy{dir: dir, cfgPath: filepath.Join(dir, "faults.json"), statsPath: filepath.Join(dir, "faults-stats.json"),
		verbose: verbose, conns: map[net.Conn]struct{}{}, stats: faultStats{ByCode: map[string]int64{}}, rng: mrand.New(mrand.NewSource(1))}
	fp.rp = httputil.NewSingleHostReverseProxy(up)
	fp.rp.Transport = rt
	fp.rp.FlushInterval = -1 // watch / streaming responses flow through unbuffered
	if !verbose {
		fp.rp.ErrorLog = log.New(io.Discard, "", 0)
	}
	fp.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() == nil {
			writeStatus(w, http.StatusBadGateway, "kubesim fault proxy: upstream error: "+err.Error())
		}
	}
	cert, err := proxyServingCert(p)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		Handler: fp,
		// HTTP/1.1 only, so that a "drop" really closes the client's TCP connection (hijack).
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12},
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     log.New(io.Discard, "", 0),
		ConnState:    fp.connState,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	proxyURL := "https://" + ln.Addr().String()
	if err := writeKubeconfigNamed(filepath.Join(dir, "kubeconfig-faulty"), proxyURL, p, "kubesim-faulty"); err != nil {
		ln.Close()
		return "", nil, err
	}
	fp.reload()
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fp.reload()
				if n++; n%10 == 0 {
					fp.writeStats(false)
				}
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = srv.Close()
			fp.writeStats(true)
		})
	}
	return proxyURL, stop, nil
}

func proxyServingCert(p *pki) (tls.Certificate, error) {
	k, kDER, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now().Add(-time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "kubesim-fault-proxy"},
		NotBefore: now, NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, p.caX509, &k.PublicKey, p.caPriv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kDER}))
}

func (fp *faultProxy) connState(c net.Conn, s http.ConnState) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	switch s {
	case http.StateNew:
		fp.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(fp.conns, c)
	}
}

// reload re-reads faults.json when it appeared, vanished, or its mtime/size changed.
func (fp *faultProxy) reload() {
	fi, err := os.Stat(fp.cfgPath)
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if err != nil {
		if fp.exists {
			fp.exists, fp.cfg = false, nil
			logf("fault proxy: %s removed, no faults", fp.cfgPath)
		}
		return
	}
	if fp.exists && fi.ModTime().Equal(fp.modTime) && fi.Size() == fp.size {
		return
	}
	fp.exists, fp.modTime, fp.size = true, fi.ModTime(), fi.Size()
	b, err := os.ReadFile(fp.cfgPath)
	if err != nil {
		return
	}
	var c faultConfig
	if err := json.Unmarshal(b, &c); err != nil {
		logf("fault proxy: %s: %v (keeping previous faults)", fp.cfgPath, err)
		return
	}
	seed := int64(1)
	if c.Seed != nil {
		seed = *c.Seed
	}
	if len(c.Codes) == 0 {
		c.Codes = []int{http.StatusInternalServerError}
	}
	fp.cfg, fp.rng, fp.loadedAt, fp.injected = &c, mrand.New(mrand.NewSource(seed)), time.Now(), 0
	logf("fault proxy: loaded %s: %s", fp.cfgPath, strings.TrimSpace(string(b)))
	if c.OutageSeconds > 0 {
		// An API-server restart also breaks the connections that are open (watches).
		var open []net.Conn
		for conn := range fp.conns {
			if tc, ok := conn.(*tls.Conn); ok {
				conn = tc.NetConn()
			}
			open = append(open, conn)
		}
		fp.stats.OutageCut += int64(len(open))
		fp.dirty = true
		go func() {
			for _, conn := range open {
				_ = conn.Close()
			}
		}()
	}
}

func (fp *faultProxy) writeStats(force bool) {
	fp.mu.Lock()
	if !fp.dirty && !force {
		fp.mu.Unlock()
		return
	}
	fp.dirty = false
	b, _ := json.Marshal(fp.stats)
	fp.mu.Unlock()
	tmp := fp.statsPath + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, fp.statsPath)
	}
}

type faultAction int

const (
	actForward faultAction = iota
	actDrop
	actError
)

func isWatch(r *http.Request) bool {
	w := r.URL.Query().Get("watch")
	return w == "true" || w == "1" || strings.HasPrefix(r.URL.Path, "/api/v1/watch/") || strings.Contains(r.URL.Path, "/watch/")
}

// decide picks the fault for one request (under the lock, so the seeded sequence is deterministic
// for a given request order).
func (fp *faultProxy) decide(r *http.Request) (act faultAction, code int, delay time.Duration) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.stats.Requests++
	fp.dirty = true
	c := fp.cfg
	if c == nil {
		return actForward, 0, 0
	}
	if c.OutageSeconds > 0 && time.Since(fp.loadedAt) < time.Duration(c.OutageSeconds*float64(time.Second)) {
		fp.stats.Drops++
		fp.stats.OutageRefused++
		return actDrop, 0, 0
	}
	if len(c.Methods) > 0 {
		ok := false
		for _, m := range c.Methods {
			if strings.EqualFold(m, r.Method) {
				ok = true
			}
		}
		if !ok {
			return actForward, 0, 0
		}
	}
	if c.PathContains != "" && !strings.Contains(r.URL.Path, c.PathContains) {
		return actForward, 0, 0
	}
	watch := isWatch(r)
	if c.DelayMs > 0 && !watch {
		delay = time.Duration(c.DelayMs) * time.Millisecond
		fp.stats.Delayed++
	}
	if c.DropRate > 0 && fp.rng.Float64() < c.DropRate {
		fp.stats.Drops++
		return actDrop, 0, delay
	}
	if !watch && c.ErrorRate > 0 && (c.Limit == 0 || fp.injected < c.Limit) && fp.rng.Float64() < c.ErrorRate {
		fp.injected++
		code = c.Codes[fp.rng.Intn(len(c.Codes))]
		fp.stats.Errors++
		fp.stats.ByCode[strconv.Itoa(code)]++
		return actError, code, delay
	}
	return actForward, 0, delay
}

func (fp *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fp.reload()
	act, code, delay := fp.decide(r)
	fp.mu.Lock()
	landed := fp.cfg != nil && fp.cfg.Landed
	fp.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	switch act {
	case actDrop:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // not hijackable: abort the response
	case actError:
		if fp.verbose {
			logf("fault proxy: %s %s -> %d", r.Method, r.URL.RequestURI(), code)
		}
		if landed {
			// The request takes effect; its answer is replaced by the error.
			fp.rp.ServeHTTP(httptest.NewRecorder(), r)
		}
		if code == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "1")
		}
		writeStatus(w, code, "")
		return
	}
	fp.rp.ServeHTTP(w, r)
}

// writeStatus answers with a metav1.Status body like kube-apiserver's.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	reason, defMsg := statusReason(code)
	if msg == "" {
		msg = defMsg
	}
	st := map[string]interface{}{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]interface{}{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	}
	if code == http.StatusTooManyRequests {
		st["details"] = map[string]interface{}{"retryAfterSeconds": 1}
	}
	b, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func statusReason(code int) (string, string) {
	const pfx = "kubesim fault injection: "
	switch code {
	case 400:
		return "BadRequest", pfx + "bad request"
	case 401:
		return "Unauthorized", pfx + "Unauthorized"
	case 403:
		return "Forbidden", pfx + "forbidden"
	case 404:
		return "NotFound", pfx + "the server could not find the requested resource"
	case 409:
		return "Conflict", "Operation cannot be fulfilled (" + pfx + "conflict): the object has been modified; please apply your changes to the latest version and try again"
	case 410:
		return "Expired", pfx + "too old resource version"
	case 422:
		return "Invalid", pfx + "invalid"
	case 429:
		return "TooManyRequests", pfx + "the server has received too many requests and has asked us to try again later"
	case 500:
		return "InternalError", pfx + "Internal error occurred"
	case 503:
		return "ServiceUnavailable", pfx + "the server is currently unable to handle the request"
	case 504:
		return "Timeout", pfx + "the server was unable to return a response in the time allotted"
	default:
		return "", fmt.Sprintf("%sinjected HTTP %d", pfx, code)
	}
}
