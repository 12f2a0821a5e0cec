#!/usr/bin/env python3
"""Fails when the top-level modules of a Rust crate depend on each other in a cycle.

Usage: python3 scripts/check-import-cycles.py CRATE_SRC_DIR [CRATE_SRC_DIR ...]
  e.g. python3 scripts/check-import-cycles.py abci-app/src sandbox/src

Each top-level module of a crate is one node: `src/foo.rs`, or `src/foo/`
with everything under it. `lib.rs` and `main.rs` are the crate root, not a
node (they name every module). An edge `a -> b` is a reference from a file
of `a` to `crate::b` (in `use`, `pub use`, or a path anywhere in the code),
to `super::b` from a file whose parent is the crate root, or, from a file
nested in `a`, to `super::...`/`super::super::...` that climbs out to the
root and names `b`. References of a module to itself are not edges.
Comments and string literals are ignored.

Exits 0 when no crate has a cycle; otherwise prints each cycle found as
`crate: a -> b -> a` and exits 1. Standard library only.
"""

import bisect
import os
import re
import sys

ROOTS = ("lib.rs", "main.rs")


def strip_comments_and_strings(text):
    """Removes comments, string and char literals, keeping line structure."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth = 1
            i += 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth += 1
                    i += 2
                elif text.startswith("*/", i):
                    depth -= 1
                    i += 2
                else:
                    if text[i] == "\n":
                        out.append("\n")
                    i += 1
        elif c == "r" and re.match(r'r#*"', text[i:i + 260] or ""):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a).
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:i + 16])
            if m:
                out.append(" ")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def use_paths(code):
    """Each path a `use` names, with the position of its `use`:
    `use crate::{x, y::{z}};` yields `crate::x` and `crate::y::z`."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        for path in _expand(m.group(1).strip()):
            paths.append((m.start(), path))
    return paths


def inline_depths(code):
    """Positions where the number of enclosing inline `mod name { ... }`
    blocks changes, as a sorted list of (position, depth)."""
    stack, changes = [], [(0, 0)]
    for m in re.finditer(r"\bmod\s+\w+\s*\{|\{|\}", code):
        if m.group(0) == "}":
            if stack and stack.pop():
                changes.append((m.end(), sum(stack)))
        else:
            inline = m.group(0) != "{"
            stack.append(inline)
            if inline:
                changes.append((m.end(), sum(stack)))
    return changes


def depth_at(changes, position):
    keys = [p for p, _ in changes]
    return changes[bisect.bisect_right(keys, position) - 1][1]


def _split_top(s):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _expand(tree):
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    brace = tree.find("{")
    if brace < 0:
        return [tree]
    prefix = tree[:brace]
    inner = tree[brace + 1:tree.rfind("}")]
    out = []
    for part in _split_top(inner):
        for p in _expand(part):
            out.append(prefix + p if p != "self" else prefix.rstrip(":"))
    return out


def module_of(src, path):
    """The top-level module a file belongs to, or None for the crate root."""
    rel = os.path.relpath(path, src)
    parts = rel.split(os.sep)
    if len(parts) == 1:
        if parts[0] in ROOTS:
            return None
        return parts[0][:-3]
    return parts[0]


def depth_of(src, path):
    """How many `super::` lead from this file's module to the crate root."""
    rel = os.path.relpath(path, src)
    parts = rel.split(os.sep)
    name = parts[-1]
    # foo.rs and foo/mod.rs are module foo (depth 1); foo/bar.rs is foo::bar
    # (depth 2).
    levels = len(parts) - 1
    if name not in ("mod.rs",) and not (len(parts) == 1 and name in ROOTS):
        levels += 1
    return levels


def module_files(src):
    for dirpath, _, files in os.walk(src):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def resolve(path, module, depth, nodes):
    """The top-level module a path names, if it leaves `module` for another."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        target = segs[1] if len(segs) > 1 else None
    elif segs[0] == "super":
        ups = 0
        while ups < len(segs) and segs[ups] == "super":
            ups += 1
        # From a file at `depth`, `ups` supers land at depth - ups; at 0 the
        # next segment is a top-level module.
        land = depth - ups
        if land > 0:
            return None  # still inside this top-level module
        target = segs[ups] if ups < len(segs) else None
    else:
        return None
    if target in nodes and target != module:
        return target
    return None


def graph(src):
    nodes = set()
    for entry in os.listdir(src):
        full = os.path.join(src, entry)
        if entry.endswith(".rs") and entry not in ROOTS:
            nodes.add(entry[:-3])
        elif os.path.isdir(full):
            nodes.add(entry)
    edges = {n: {} for n in nodes}
    for path in module_files(src):
        module = module_of(src, path)
        if module is None:
            continue
        depth = depth_of(src, path)
        with open(path, encoding="utf-8") as f:
            code = strip_comments_and_strings(f.read())
        changes = inline_depths(code)
        candidates = use_paths(code)
        # Paths anywhere in the code: crate::x, super::x, super::super::x.
        candidates += [
            (m.start(), m.group(0))
            for m in re.finditer(r"\b(?:crate|super)(?:::\w+)+", code)
        ]
        for position, p in candidates:
            here = depth + depth_at(changes, position)
            target = resolve(p, module, here, nodes)
            if target:
                where = os.path.relpath(path, src)
                edges[module].setdefault(target, where)
    return edges


def find_cycles(edges):
    """Strongly connected components of more than one node (Tarjan), each
    with one cycle through it."""
    index, low, stack, on, comps = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return [(comp, cycle_in(edges, set(comp), comp[0])) for comp in comps]


def cycle_in(edges, comp, start):
    """A shortest cycle through `start` inside one strongly connected set."""
    prev = {start: None}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(edges[v]):
            if w not in comp:
                continue
            if w == start:
                path = [v]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if w not in prev:
                prev[w] = v
                queue.append(w)
    return [start, start]


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    failed = False
    for src in argv[1:]:
        if not os.path.isdir(src):
            print(f"{src}: not a directory", file=sys.stderr)
            return 2
        edges = graph(src)
        cycles = find_cycles(edges)
        if not cycles:
            count = sum(len(t) for t in edges.values())
            print(f"{src}: no cycle among {len(edges)} modules ({count} edges)")
            continue
        failed = True
        for comp, cycle in cycles:
            steps = []
            for a, b in zip(cycle, cycle[1:]):
                steps.append(f"  {a} -> {b}  (in {edges[a][b]})")
            print(f"{src}: cycle {' -> '.join(cycle)}")
            if len(comp) > len(cycle) - 1:
                print(f"  (modules that all depend on each other: {', '.join(comp)})")
            print("\n".join(steps))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
