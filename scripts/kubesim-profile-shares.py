#!/usr/bin/env python3
# Splits a kubesim CPU profile by component (kubesim is one Go process: etcd, kube-apiserver,
# controller-manager, scheduler, Calico IPAM, the node agent). Input: the output of
#   go tool pprof -traces target/kubesim/kubesim cpu.pprof
# Each sample goes to the first rule its stack matches; prints Markdown rows: component, CPU s, share.
import re, sys, collections
def val(s):
    m = re.match(r'([\d.]+)(ns|us|ms|s|mins|hrs)', s)
    v = float(m.group(1)); return v * {'ns':1e-9,'us':1e-6,'ms':1e-3,'s':1,'mins':60,'hrs':3600}[m.group(2)]
rules = [
 ('agent: IPAM (libcalico-go)', lambda fs: any('main.(*agent)' in f for f in fs) and any('libcalico-go/lib/ipam' in f for f in fs)),
 ('agent: other (status patches, informer handlers)', lambda fs: any(f.startswith('main.(*agent)') or f.startswith('main.') and 'agent' in f for f in fs)),
 ('calico kube-controllers', lambda fs: any('projectcalico/calico/kube-controllers' in f for f in fs)),
 ('other calico (libcalico-go, not the agent)', lambda fs: any('projectcalico/calico' in f for f in fs)),
 ('scheduler', lambda fs: any('k8s.io/kubernetes/pkg/scheduler' in f for f in fs)),
]
kcm = re.compile(r'k8s\.io/kubernetes/pkg/controller/([a-z_]+)')
def classify(fs):
    for name, r in rules:
        if r(fs): return name
    for f in fs:
        m = kcm.search(f)
        if m: return 'controller-manager: ' + m.group(1)
    if any('go.etcd.io/etcd/server' in f for f in fs): return 'etcd server'
    handler = any('net/http.(*conn).serve' in f or 'http2.(*serverConn)' in f or 'ServeHTTP' in f or 'finisher.finishRequest' in f for f in fs)
    if not handler and any('k8s.io/apiserver/pkg/storage/cacher' in f for f in fs):
        return 'kube-apiserver: watch cache (event dispatch)'
    if handler or any(re.search(r'k8s\.io/(apiserver|apiextensions-apiserver|kube-aggregator)|k8s\.io/kubernetes/pkg/(registry|controlplane|kubeapiserver)', f) for f in fs):
        crd = any('crdHandler' in f for f in fs)
        kind = 'Calico CRDs' if crd else 'built-in resources'
        if any('WatchServer' in f or 'serveWatch' in f for f in fs): return 'kube-apiserver: watch streams (encode, send)'
        if any('ListResource' in f for f in fs): return f'kube-apiserver: LIST ({kind})'
        if any('UpdateResource' in f or 'PatchResource' in f or 'patcher' in f or 'GuaranteedUpdate' in f for f in fs): return f'kube-apiserver: update/patch ({kind})'
        if any('createHandler' in f or 'CreateResource' in f or 'CreateNamedResource' in f for f in fs): return f'kube-apiserver: create ({kind})'
        if any('DeleteResource' in f for f in fs): return f'kube-apiserver: delete ({kind})'
        if any('GetResource' in f for f in fs): return f'kube-apiserver: GET ({kind})'
        if any('crypto/tls' in f for f in fs): return 'kube-apiserver: TLS'
        return 'kube-apiserver: handlers (other: filters, HTTP/2, auth)'
    if any('go.etcd.io/etcd/client' in f or 'google.golang.org/grpc' in f for f in fs): return 'etcd client/grpc'
    if any('k8s.io/client-go' in f for f in fs): return 'client-go (informers, transport; any client)'
    if any('runtime.gcBgMarkWorker' in f for f in fs): return 'Go GC (background)'
    if any('runtime.mcall' in f or 'runtime.schedule' in f or 'runtime.findRunnable' in f for f in fs): return 'Go scheduler'
    if any('runtime.bgsweep' in f or 'runtime.bgscavenge' in f for f in fs): return 'Go GC (sweep/scavenge)'
    if any(f.startswith('syscall.') or 'internal/poll' in f for f in fs): return 'syscalls (other)'
    return 'other'
tot = collections.Counter(); total = 0.0
cur = None
def flush():
    global cur, total
    if cur:
        v, fs = cur; tot[classify(fs)] += v; total += v
    cur = None
for line in open(sys.argv[1]) if sys.argv[1] != '-' else sys.stdin:
    if line.startswith('-----------+'):
        flush(); continue
    m = re.match(r'\s+([\d.]+(?:ns|us|ms|s|mins|hrs))\s+(.*)', line)
    if m and cur is None and not line.startswith(' '*13):
        cur = (val(m.group(1)), [m.group(2).strip()]); continue
    if cur is not None and line.strip():
        cur[1].append(line.strip())
flush()
for k, v in tot.most_common():
    print(f'| {k} | {v:.1f} | {100*v/total:.1f}% |')
print(f'| total | {total:.1f} | 100% |')
groups = collections.Counter()
for k, v in tot.items():
    if k.startswith('kube-apiserver'): g = 'kube-apiserver'
    elif k.startswith('etcd'): g = "etcd (server, and the API server's client)"
    elif k.startswith('controller-manager'): g = 'kube-controller-manager'
    elif k.startswith('agent'): g = "kubesim's agent (with its Calico IPAM calls)"
    elif k.startswith('Go '): g = 'Go runtime (GC, scheduler)'
    elif k == 'scheduler': g = 'kube-scheduler'
    else: g = 'other (informers of every client, syscalls, unattributed)'
    groups[g] += v
print()
for k, v in groups.most_common():
    print(f'| {k} | {v:.1f} | {100*v/total:.0f}% |')
