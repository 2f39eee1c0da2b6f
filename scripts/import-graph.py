#!/usr/bin/env python3
"""The import drawing of src/: module-to-module edges from `crate::`,
`super::` and `self::` paths, grouped `use a::{b, c::{d}}` trees included
(comments, string literals and `#[cfg(test)]` items left out, the code after
them kept). Prints the edges between top-level modules and fails (exit 1) on
an import circle between files, or when the pure core or the cluster layer
reaches up into the CLI, the verbs, the migration or the output. Run by
`make lint`; `--self-test` runs its own unit tests."""
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


def module_of(path, root=ROOT):
    rel = os.path.relpath(path, root)[:-3]
    return rel[:-4] if rel.endswith("/mod") else rel


def strip_literals(text):
    """Comments, string and char literals blanked out (their braces and
    `crate::` words would mislead the parser); lifetimes kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if end < 0 else end + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.[^']*|[^\\'])'", text[i:]):
            i += len(re.match(r"'(\\.[^']*|[^\\'])'", text[i:]).group(0))
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_item(text, i):
    """Index just past the item starting at `i`: up to its `;` or its
    balanced `{...}` block, whichever ends it."""
    depth, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == ";" and depth == 0:
            return i + 1
        i += 1
    return n


def drop_test_items(text):
    """The code without the items under `#[cfg(test)]` (attributes that
    follow it belong to the same item). Returns (code, test-only module names
    declared as `mod name;`)."""
    out, test_mods, pos = [], set(), 0
    for m in re.finditer(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]", text):
        if m.start() < pos:
            continue
        out.append(text[pos : m.start()])
        i = m.end()
        while True:  # further attributes of the same item
            a = re.match(r"\s*#\s*\[", text[i:])
            if not a:
                break
            j, depth = i + a.end() - 1, 0
            while j < len(text):
                depth += {"[": 1, "]": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            i = j
        decl = re.match(r"\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text[i:])
        if decl:
            test_mods.add(decl.group(1))
        pos = skip_item(text, i)
    out.append(text[pos:])
    return "".join(out), test_mods


def use_paths(tree):
    """Flatten a use tree (`a::{b, c::{d, *}}`, renames already dropped) into its paths."""
    tree = re.sub(r"\s+", "", tree)
    paths = []

    def walk(prefix, s):
        # split top-level commas
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            cur += ch
        parts.append(cur)
        for p in filter(None, parts):
            brace = p.find("{")
            if brace >= 0:
                head = p[:brace].rstrip(":")
                walk(prefix + ([x for x in head.split("::") if x] if head else []), p[brace + 1 : p.rindex("}")])
            else:
                paths.append(prefix + [x for x in p.split("::") if x and x != "*"])

    walk([], tree)
    return paths


def resolve(m, path, modules):
    """The module a path from module `m` lands in (longest prefix that is a
    module), or None. Only `crate::`, `super::` and `self::` paths count."""
    if not path:
        return None
    if path[0] == "crate":
        base, rest = [], path[1:]
    elif path[0] in ("super", "self"):
        base, rest = m.split("/") if m else [], path
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
        if path[0] == "super" and path.count("super") == 1:
            # `super::Item` (the parent's own item) is not an edge; `super::name` is.
            for i in range(len(rest), 0, -1):
                target = "/".join(base + rest[:i])
                if target in modules:
                    return target
            return None
    else:
        return None
    for i in range(len(rest), -1, -1):
        target = "/".join(base + rest[:i])
        if target in modules:
            return target
    return None


def edges_of(sources):
    """{module: text} -> ({module: set(modules it imports)}, modules)."""
    modules = set(sources)
    test_only = set()
    cleaned = {}
    for m, text in sources.items():
        code, test_mods = drop_test_items(strip_literals(text))
        cleaned[m] = code
        test_only |= {f"{m}/{t}" if m else t for t in test_mods}
        # `#[cfg(test)] #[path = "x.rs"] mod name;` in a non-mod.rs file: the
        # sibling file is a test module too.
        parent = m.rsplit("/", 1)[0] if "/" in m else ""
        test_only |= {f"{parent}/{t}" if parent else t for t in test_mods}
    modules -= test_only
    edges = collections.defaultdict(set)
    for m in modules:
        code = cleaned[m]
        paths = []
        for u in re.finditer(r"\buse\s+([^;]+);", code):
            paths += use_paths(re.sub(r"\s+as\s+\w+", "", u.group(1)))
        rest = re.sub(r"\buse\s+[^;]+;", " ", code)
        paths += [p.split("::") for p in re.findall(r"\b(?:crate|super|self)(?:::\w+)+", rest)]
        for p in paths:
            target = resolve(m, p, modules)
            if target is not None and target != m:
                edges[m].add(target)
    return edges, modules


def circles_of(edges, modules):
    """Strongly connected components (Tarjan) with two or more modules."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
    return circles


def main():
    files = [os.path.join(d, f) for d, _, fs in os.walk(ROOT) for f in fs if f.endswith(".rs")]
    sources = {module_of(f): open(f, encoding="utf-8").read() for f in files}
    edges, modules = edges_of(sources)

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
    problems += [f"import circle: {' -> '.join(c)}" for c in circles_of(edges, modules)]
    for p in problems:
        print(f"import-graph: {p}", file=sys.stderr)
    return 1 if problems else 0


def self_test():
    import unittest

    class ImportGraph(unittest.TestCase):
        def circles(self, sources):
            return circles_of(*edges_of(sources))

        def test_circle_through_a_grouped_super_import(self):
            src = {
                "cluster": "mod pools; mod record;",
                "cluster/pools": "use super::{record, Cluster};\nfn f() {}",
                "cluster/record": "use super::{\n    pools::{self, PoolWriter as W},\n    COMPONENT,\n};",
            }
            self.assertEqual(self.circles(src), [["cluster/pools", "cluster/record"]])

        def test_circle_through_a_grouped_crate_import(self):
            src = {"a": "use crate::{b::X, c};", "b": "fn x() { crate::a::y() }", "c": ""}
            self.assertEqual(self.circles(src), [["a", "b"]])

        def test_code_after_a_test_module_counts(self):
            src = {
                "a": "#[cfg(test)]\nmod tests {\n    use crate::b::*;\n    fn t() { let s = \"}\"; }\n}\nfn later() { crate::b::f() }",
                "b": "use crate::a;",
            }
            self.assertEqual(self.circles(src), [["a", "b"]])

        def test_test_modules_and_literals_are_not_imports(self):
            src = {
                "a": "#[cfg(test)]\n#[path = \"a_tests.rs\"]\nmod a_tests;\n#[cfg(test)]\nuse crate::b;\nconst S: &str = \"crate::b::x {\"; // crate::b\nfn f<'a>(c: char) -> bool { c == '{' }",
                "a_tests": "use crate::b::*;",
                "b": "use crate::a::f;",
            }
            edges, modules = edges_of(src)
            self.assertEqual(dict(edges), {"b": {"a"}})
            self.assertNotIn("a_tests", modules)

        def test_super_super_and_self_paths(self):
            src = {"x": "", "x/y": "", "x/y/z": "use super::super::q;", "x/q": "use self::r; mod r;", "x/q/r": ""}
            edges, _ = edges_of(src)
            self.assertEqual(edges["x/y/z"], {"x/q"})
            self.assertEqual(edges["x/q"], {"x/q/r"})

    result = unittest.TextTestRunner(verbosity=1).run(unittest.defaultTestLoader.loadTestsFromTestCase(ImportGraph))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(self_test() if "--self-test" in sys.argv[1:] else main())
