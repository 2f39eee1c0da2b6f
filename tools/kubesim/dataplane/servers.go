package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Container is what the dataplane needs to know of a container to play its image.
type Container struct {
	Image   string
	Command []string
	Args    []string
	Ports   []int
}

// Behaviour is what a container does, read from its image and arguments in the vocabulary of
// Kubernetes' own e2e tests (agnhost) or, for any other image, an HTTP server on each declared
// containerPort that answers the pod's name.
type Behaviour struct {
	Kind    string // "netexec", "serve-hostname", "connect", "pause", "ports"
	Ports   []int
	Connect string // connect: HOST:PORT
}

// BehaviourOf reads a container's behaviour.
func BehaviourOf(c Container) Behaviour {
	argv := append(append([]string{}, c.Command...), c.Args...)
	image := c.Image
	if i := strings.LastIndex(image, "/"); i >= 0 {
		image = image[i+1:]
	}
	name, _, _ := strings.Cut(image, ":")
	name, _, _ = strings.Cut(name, "@")
	if name == "pause" {
		return Behaviour{Kind: "pause"}
	}
	if name != "agnhost" {
		return Behaviour{Kind: "ports", Ports: c.Ports}
	}
	sub, rest := "", []string(nil)
	for i, a := range argv {
		if strings.HasPrefix(a, "-") || strings.HasSuffix(a, "agnhost") {
			continue
		}
		sub, rest = a, argv[i+1:]
		break
	}
	switch sub {
	case "netexec":
		return Behaviour{Kind: "netexec", Ports: []int{flagInt(rest, "http-port", 8080)}}
	case "serve-hostname":
		return Behaviour{Kind: "serve-hostname", Ports: []int{flagInt(rest, "port", 9376)}}
	case "connect":
		for _, a := range rest {
			if !strings.HasPrefix(a, "-") {
				return Behaviour{Kind: "connect", Connect: a}
			}
		}
		return Behaviour{Kind: "connect"}
	case "pause":
		return Behaviour{Kind: "pause"}
	}
	return Behaviour{Kind: "ports", Ports: c.Ports}
}

// flagInt reads --name=N or --name N (or -name) from args.
func flagInt(args []string, name string, def int) int {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return n
			}
		}
		if a == name && i+1 < len(args) {
			if n, err := strconv.Atoi(args[i+1]); err == nil {
				return n
			}
		}
	}
	return def
}

// StartServers opens the container's listening sockets inside ns (the pod's namespace, or the
// node's for a hostNetwork pod) and serves them until the pod stops. hostname is what /hostname
// and the default servers answer (the pod's name).
func StartServers(ns netns.NsHandle, owner *Pod, hostname string, b Behaviour) error {
	var handler http.Handler
	switch b.Kind {
	case "netexec":
		handler = netexecHandler(hostname)
	case "serve-hostname", "ports":
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, hostname) })
	default:
		return nil
	}
	for _, port := range b.Ports {
		if port <= 0 {
			continue
		}
		var ln net.Listener
		err := Do(ns, func() error {
			var lerr error
			ln, lerr = net.Listen("tcp", fmt.Sprintf(":%d", port))
			return lerr
		})
		if err != nil {
			return fmt.Errorf("listen on port %d: %w", port, err)
		}
		srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ConnState: owner.trackConn}
		go func() { _ = srv.Serve(ln) }()
		owner.AddServer(srv)
	}
	return nil
}

// netexecHandler answers agnhost netexec's paths.
func netexecHandler(hostname string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, hostname) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Query().Get("msg")) })
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.RemoteAddr) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "NOW: "+time.Now().String())
	})
	return mux
}

// DialIn opens a TCP connection whose socket belongs to ns.
func DialIn(ctx context.Context, ns netns.NsHandle, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() error {
		d := net.Dialer{Timeout: timeout}
		var derr error
		c, derr = d.DialContext(ctx, "tcp", addr)
		return derr
	})
	return c, err
}

// HTTPClientIn is an HTTP client whose connections start in ns; one connection per request.
func HTTPClientIn(ns netns.NsHandle, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return DialIn(ctx, ns, addr, timeout)
		},
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// ProbeHTTP performs an httpGet probe as the kubelet does: success is a status in [200, 400).
func ProbeHTTP(ns netns.NsHandle, host string, port int, path string, timeout time.Duration) error {
	if path == "" {
		path = "/"
	}
	resp, err := HTTPClientIn(ns, timeout).Get("http://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// ProbeTCP performs a tcpSocket probe: a connection that opens.
func ProbeTCP(ns netns.NsHandle, host string, port int, timeout time.Duration) error {
	c, err := DialIn(context.Background(), ns, net.JoinHostPort(host, strconv.Itoa(port)), timeout)
	if err != nil {
		return err
	}
	return c.Close()
}
