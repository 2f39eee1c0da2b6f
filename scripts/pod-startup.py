#!/usr/bin/env python3
# Pod start-up latency from `kubectl get pods -o json`: create -> scheduled -> started (IP assigned, Running) -> Ready.
# Timestamps have 1 s resolution. An optional second argument keeps only the namespaces starting with it.
import json, sys, statistics
from datetime import datetime, timezone
def t(s): return datetime.strptime(s, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=timezone.utc).timestamp()
pods = json.load(open(sys.argv[1]))['items']
rows = []
prefix = sys.argv[2] if len(sys.argv) > 2 else ''
for p in pods:
    if not p['metadata'].get('namespace', '').startswith(prefix):
        continue
    c = t(p['metadata']['creationTimestamp'])
    conds = {x['type']: x for x in p['status'].get('conditions', [])}
    if 'PodScheduled' not in conds or 'startTime' not in p['status'] or conds.get('Ready', {}).get('status') != 'True':
        continue
    s = t(conds['PodScheduled']['lastTransitionTime']); st = t(p['status']['startTime']); r = t(conds['Ready']['lastTransitionTime'])
    rows.append((c, s - c, st - s, r - st, r - c))
rows.sort()
if not rows:
    sys.exit('no Ready pods in the input')
def q(xs, f): xs = sorted(xs); return xs[min(len(xs)-1, int(f*len(xs)))]
print(f'{len(rows)} pods; first created {datetime.fromtimestamp(rows[0][0], timezone.utc):%H:%M:%S}, last {datetime.fromtimestamp(rows[-1][0], timezone.utc):%H:%M:%S}')
for i, name in [(1, 'created -> scheduled'), (2, 'scheduled -> started (agent takes the pod up)'), (3, 'started -> Ready (IPAM, Running patch, readiness delay, Ready patch)'), (4, 'created -> Ready')]:
    xs = [r[i] for r in rows]
    print(f'| {name} | {statistics.median(xs):.0f} | {q(xs,0.9):.0f} | {max(xs):.0f} | {statistics.mean(xs):.1f} |')
# per 10 s window of creation
if len(sys.argv) > 2:
    t0 = rows[0][0]
    b = {}
    for r in rows: b.setdefault(int((r[0]-t0)//10), []).append(r)
    for k in sorted(b):
        xs = b[k]
        print(f'{k*10:4d}s n={len(xs):4d} sched {statistics.mean(x[1] for x in xs):5.1f} start {statistics.mean(x[2] for x in xs):5.1f} ready {statistics.mean(x[3] for x in xs):5.1f} total {statistics.mean(x[4] for x in xs):5.1f}')
