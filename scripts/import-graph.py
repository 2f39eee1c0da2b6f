#!/usr/bin/env python3
"""The import drawing of src/: module-to-module edges from `crate::` and
`super::` paths (comments and test modules left out). Prints the edges
between top-level modules and fails (exit 1) on an import circle between
files, or when the pure core or the cluster layer reaches up into the CLI,
the verbs, the migration or the output. Run by `make lint`."""
import collections
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
# Which top-level modules each layer may import (besides itself).
ALLOWED = {
    "core": set(),
    "cluster": {"core", "error"},
    "output": {"cluster", "error"},
}


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3]
    return rel[:-4] if rel.endswith("/mod") else rel


def main():
    files = [os.path.join(d, f) for d, _, fs in os.walk(ROOT) for f in fs if f.endswith(".rs")]
    modules = {module_of(f) for f in files}
    edges = collections.defaultdict(set)
    for f in files:
        m = module_of(f)
        text = open(f, encoding="utf-8").read().split("#[cfg(test)]")[0]
        text = re.sub(r"//.*", "", text)
        for path in re.findall(r"crate::([a-z_:]+)", text):
            parts = path.split("::")
            for i in range(len(parts), 0, -1):
                target = "/".join(parts[:i])
                if target in modules:
                    if target != m:
                        edges[m].add(target)
                    break
        parent = m.rsplit("/", 1)[0] if "/" in m else ""
        for name in re.findall(r"super::([a-z_]+)", text):
            target = f"{parent}/{name}" if parent else name
            if target in modules and target != m:
                edges[m].add(target)

    top = lambda m: m.split("/")[0]
    layer_edges = collections.defaultdict(set)
    for a, bs in edges.items():
        for b in bs:
            if top(a) != top(b):
                layer_edges[top(a)].add(top(b))
    for a in sorted(layer_edges):
        print(f"{a} -> {', '.join(sorted(layer_edges[a]))}")

    problems = []
    for layer, allowed in ALLOWED.items():
        extra = layer_edges.get(layer, set()) - allowed
        if extra:
            problems.append(f"{layer} imports {', '.join(sorted(extra))}")

    # Strongly connected components (Tarjan): any with two or more files is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    problems += [f"import circle: {' -> '.join(c)}" for c in circles]
    for p in problems:
        print(f"import-graph: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
