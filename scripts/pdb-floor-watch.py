#!/usr/bin/env python3
"""Reads `kubectl get pdb -w --output-watch-events -o json` on stdin until it
closes, then prints one JSON line: how many PDBs were seen, how many status
updates arrived, and every PDB whose currentHealthy went below desiredHealthy
(the disruption controller's own count of its floor) with its lowest margin.

make bench runs it beside each migration, so a floor crossed during a bench
run is a number in the table, not something nobody looked at."""
import json
import sys


def documents(stream):
    """The concatenated JSON documents kubectl writes, one at a time."""
    decoder = json.JSONDecoder()
    buf = ""
    for chunk in iter(lambda: stream.read(65536), ""):
        buf += chunk
        while True:
            buf = buf.lstrip()
            if not buf:
                break
            try:
                doc, end = decoder.raw_decode(buf)
            except json.JSONDecodeError:
                break  # an incomplete document: read more
            buf = buf[end:]
            yield doc


def events(docs):
    """Every document as PDB events: when its initial list comes in pages,
    kubectl writes each page as one ADDED event holding a
    PodDisruptionBudgetList; its items are the PDBs."""
    for doc in docs:
        obj = doc.get("object", doc)
        if isinstance(obj, dict) and obj.get("kind", "").endswith("List"):
            for item in obj.get("items", []):
                yield {"type": doc.get("type", "ADDED"), "object": item}
        else:
            yield doc


def main():
    seen, updates, lowest, restarts, errors = set(), 0, {}, 0, []
    for event in events(documents(sys.stdin)):
        # bench.sh starts a watch again when the server ends it; an ERROR
        # event (a Status, e.g. an expired resourceVersion) is no PDB.
        if event.get("type") == "RESTART":
            restarts += 1
            continue
        if event.get("type") == "ERROR":
            errors.append(event.get("object", {}).get("message", ""))
            continue
        pdb = event.get("object", event)
        meta, status = pdb.get("metadata", {}), pdb.get("status", {})
        name = f'{meta.get("namespace")}/{meta.get("name")}'
        seen.add(name)
        updates += 1
        # Before the controller's first pass a PDB has no counts: nothing to judge.
        if "currentHealthy" not in status or "desiredHealthy" not in status:
            continue
        margin = status["currentHealthy"] - status["desiredHealthy"]
        lowest[name] = min(margin, lowest.get(name, margin))
    crossed = {n: m for n, m in sorted(lowest.items()) if m < 0}
    print(json.dumps({"pdbs": len(seen), "evaluated": len(lowest), "updates": updates,
                      "restarts": restarts, "errors": len(errors), "errorMessages": errors[:5],
                      "floorsCrossed": len(crossed), "crossed": crossed}))


if __name__ == "__main__":
    main()
