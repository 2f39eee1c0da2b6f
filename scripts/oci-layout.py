#!/usr/bin/env python3
"""An OCI image layout, as a tar archive, from root filesystems on disk.

    oci-layout.py OUT.tar VERSION ARCH=ROOTFS...

One gzip layer, one config and one manifest per architecture; an image
index naming them with their platform; the layout's index.json pointing at
that index under the tag VERSION (`oci-archive:OUT.tar:VERSION` to skopeo,
which pushes it as a multi-architecture image). Reproducible: files sorted,
every timestamp 0, owner root except the non-root user's home, no gzip
name or time, so the same binaries give the same digests.
"""

import gzip
import hashlib
import io
import json
import pathlib
import sys
import tarfile

NONROOT = 65532
ENTRYPOINT = "/usr/local/bin/kubectl-ippool"


def layer_tar(rootfs):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(rootfs.rglob("*")):
            rel = path.relative_to(rootfs).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if rel == "home/nonroot":
                info.uid = info.gid = NONROOT
            if rel == "tmp":
                info.mode = 0o1777
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return buf.getvalue()


class Layout:
    def __init__(self, out):
        self.tar = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)
        self.names = set()

    def add(self, name, data):
        if name in self.names:
            return
        self.names.add(name)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))

    def blob(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.add("blobs/sha256/" + digest.split(":")[1], data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main():
    out, version, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
    layout = Layout(out)
    layout.add("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}))
    manifests = []
    for pair in pairs:
        arch, rootfs = pair.split("=", 1)
        raw = layer_tar(pathlib.Path(rootfs))
        layer = layout.blob(gzip.compress(raw, compresslevel=9, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
        config = {
            "architecture": arch,
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "User": f"{NONROOT}:{NONROOT}",
                "Entrypoint": [ENTRYPOINT],
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/nonroot"],
                "WorkingDir": "/home/nonroot",
                "Labels": {"org.opencontainers.image.version": version},
            },
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "scripts/oci-image.sh"}],
        }
        cfg = layout.blob(canonical(config), "application/vnd.oci.image.config.v1+json")
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": cfg,
            "layers": [layer],
        }
        m = layout.blob(canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
        m["platform"] = {"architecture": arch, "os": "linux"}
        manifests.append(m)
        print(f"oci-layout: linux/{arch}: layer {layer['size']} bytes compressed, {len(raw)} unpacked")
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    top = layout.blob(canonical(index), "application/vnd.oci.image.index.v1+json")
    top["annotations"] = {"org.opencontainers.image.ref.name": version}
    layout.add(
        "index.json",
        canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [top]}),
    )
    layout.tar.close()
    print(f"oci-layout: {out} ({version}: {', '.join(p.split('=')[0] for p in pairs)})")


if __name__ == "__main__":
    main()
