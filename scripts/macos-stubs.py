#!/usr/bin/env python3
"""Link stubs for the two macOS frameworks kubectl-ippool links, so the
darwin targets link on Linux without Apple's SDK.

    macos-stubs.py OUT_DIR

Writes OUT_DIR/Security.framework/Security.tbd and
OUT_DIR/CoreFoundation.framework/CoreFoundation.tbd: text stubs (Apple's
TAPI format, the one zig's own libSystem.tbd uses) that name each
framework's install path and the symbols the `-sys` crates declare. The
linker records "this symbol comes from /System/Library/Frameworks/X" and
dyld binds it on the Mac from the real framework, present on every macOS;
nothing of Apple's is copied. Go's linker does the same for kubectl.

Why these frameworks at all: kube's rustls-tls verifies a server without a
kubeconfig CA through rustls-platform-verifier, which on macOS asks the
Keychain (Security.framework), so a corporate CA the Mac trusts works as
it does for kubectl.

The symbols come from the crate sources cargo resolved (cargo metadata),
so a dependency update that declares a new function is covered without
editing this file. Declared but unused symbols cost nothing: a stub
export is bound only when the binary references it.
"""

import json
import pathlib
import re
import subprocess
import sys

FRAMEWORKS = {
    # crate -> (framework, install name)
    "security-framework-sys": ("Security", "/System/Library/Frameworks/Security.framework/Versions/A/Security"),
    "core-foundation-sys": (
        "CoreFoundation",
        "/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation",
    ),
}
TARGETS = "[ x86_64-macos, arm64-macos, arm64e-macos ]"
EXTERN_BLOCK = re.compile(r'extern\s+"C"\s*\{(.*?)\n\}', re.S)
DECLARED = re.compile(r"\bpub\s+(?:fn|static(?:\s+mut)?)\s+([A-Za-z_][A-Za-z0-9_]*)")


def crate_dirs(target):
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--locked", "--format-version", "1", "--filter-platform", target],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    resolved = {n["id"] for n in meta["resolve"]["nodes"]}
    dirs = {}
    for p in meta["packages"]:
        if p["name"] in FRAMEWORKS and p["id"] in resolved:
            dirs.setdefault(p["name"], []).append(pathlib.Path(p["manifest_path"]).parent)
    return dirs


def symbols(crate_dir):
    found = set()
    for src in sorted((crate_dir / "src").rglob("*.rs")):
        for block in EXTERN_BLOCK.findall(src.read_text()):
            found.update(DECLARED.findall(block))
    return found


def tbd(install_name, names):
    listed = ", ".join(f"_{n}" for n in sorted(names))
    return (
        "--- !tapi-tbd\n"
        "tbd-version:     4\n"
        f"targets:         {TARGETS}\n"
        f"install-name:    '{install_name}'\n"
        "current-version: 0\n"
        "exports:\n"
        f"  - targets:         {TARGETS}\n"
        f"    symbols:         [ {listed} ]\n"
        "...\n"
    )


def main():
    out = pathlib.Path(sys.argv[1])
    dirs = crate_dirs("aarch64-apple-darwin")
    for crate, (framework, install_name) in FRAMEWORKS.items():
        names = set()
        for d in dirs.get(crate, []):
            names |= symbols(d)
        if crate in dirs and not names:
            sys.exit(f"macos-stubs: found no extern symbols in {crate}; its source layout changed")
        fw = out / f"{framework}.framework"
        fw.mkdir(parents=True, exist_ok=True)
        (fw / f"{framework}.tbd").write_text(tbd(install_name, names))
        print(f"macos-stubs: {framework}: {len(names)} symbols from {crate}")


if __name__ == "__main__":
    main()
