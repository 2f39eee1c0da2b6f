//! The in-cluster image, read back from its OCI archive as a runtime would
//! (index.json, the image index, the manifest of one architecture, every
//! blob checked against its digest) and run: the unpacked root filesystem
//! becomes `/` (chroot, as the image's non-root user and with only its
//! environment) in a private mount namespace where the service-account
//! files are bind-mounted where a pod has them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::TestCluster;

/// A blob of the layout, after checking its size and sha256 against the
/// descriptor that names it.
fn blob(layout: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap();
    let path = layout.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap());
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("blob {digest}: {e}"));
    assert_eq!(data.len() as u64, desc["size"].as_u64().unwrap(), "blob {digest}: size");
    assert_eq!(format!("sha256:{}", super::sha256(&path)), digest, "blob {digest}: content");
    data
}

pub struct Image {
    pub rootfs: PathBuf,
    pub config: Value,
}

/// Unpacks `archive`'s image for linux/`arch` under `into`, tag `version`.
pub fn unpack(archive: &Path, version: &str, arch: &str, into: &Path) -> Image {
    let layout = into.join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    assert!(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&layout).status().unwrap().success());
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tagged = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m.pointer("/annotations/org.opencontainers.image.ref.name") == Some(&Value::from(version)))
        .unwrap_or_else(|| panic!("no image tagged {version} in {index}"));
    let images: Value = serde_json::from_slice(&blob(&layout, tagged)).unwrap();
    let desc = images["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["architecture"] == arch && m["platform"]["os"] == "linux")
        .unwrap_or_else(|| panic!("no linux/{arch} manifest in {images}"));
    let manifest: Value = serde_json::from_slice(&blob(&layout, desc)).unwrap();
    let config: Value = serde_json::from_slice(&blob(&layout, &manifest["config"])).unwrap();
    assert_eq!(config["architecture"], arch);
    let rootfs = into.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let path = into.join("layer.tar.gz");
        std::fs::write(&path, blob(&layout, layer)).unwrap();
        let st = Command::new("tar").arg("-xzf").arg(&path).arg("-C").arg(&rootfs).status().unwrap();
        assert!(st.success(), "cannot unpack a layer");
    }
    Image { rootfs, config }
}

/// The files a pod of a ServiceAccount bound to ippool-reader gets, and
/// the API server's port as the pod sees it (127.0.0.1, which kubesim's
/// certificate names).
pub struct PodFiles {
    pub sa: tempfile::TempDir,
    pub port: String,
}

pub fn reader_pod(c: &TestCluster) -> PodFiles {
    c.kubectl_ok(&["apply", "-f", crate::common::repo_root().join("deploy/rbac.yaml").to_str().unwrap()]);
    c.kubectl_ok(&["create", "serviceaccount", "image-check", "-n", "kube-system"]);
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "image-check",
        "--clusterrole=ippool-reader",
        "--serviceaccount=kube-system:image-check",
    ]);
    let token = c.kubectl_ok(&["create", "token", "image-check", "-n", "kube-system", "--duration", "1h"]);
    let sa = tempfile::tempdir().unwrap();
    // As the kubelet mounts them: readable by the image's non-root user.
    std::fs::write(sa.path().join("token"), token.trim()).unwrap();
    std::fs::copy(c.dir().join("pki/ca.crt"), sa.path().join("ca.crt")).unwrap();
    std::fs::write(sa.path().join("namespace"), "kube-system").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(sa.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["token", "ca.crt", "namespace"] {
        std::fs::set_permissions(sa.path().join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let ready: Value = serde_json::from_slice(&std::fs::read(c.dir().join("ready")).unwrap()).unwrap();
    let server = ready["server"].as_str().unwrap();
    assert!(server.starts_with("https://127.0.0.1:"), "{server}");
    let port = server.trim_start_matches("https://127.0.0.1:").trim_end_matches('/').to_string();
    PodFiles { sa, port }
}

const IN_IMAGE: &str = r#"set -e
root="$1" sa="$2" user="$3"
shift 3
mount --make-rprivate /
mkdir -p "$root/var/run/secrets/kubernetes.io/serviceaccount"
mount --bind "$sa" "$root/var/run/secrets/kubernetes.io/serviceaccount"
exec chroot --userspec="$user" "$root" "$@"
"#;

/// Runs the image's entrypoint with `args` as a pod would: its user, its
/// environment plus the service host and port, the service-account files.
/// `emulator` (a static qemu-user copied into the root) runs a foreign
/// architecture's binary.
pub fn run(image: &Image, pod: &PodFiles, emulator: Option<&Path>, args: &[&str]) -> Output {
    let cfg = &image.config["config"];
    let user = cfg["User"].as_str().unwrap();
    assert_ne!(user.split(':').next(), Some("0"), "the image must not run as root");
    let mut argv: Vec<String> = Vec::new();
    if let Some(emu) = emulator {
        let inside = Path::new("/").join(emu.file_name().unwrap());
        std::fs::copy(emu, image.rootfs.join(inside.strip_prefix("/").unwrap())).unwrap();
        argv.push(inside.display().to_string());
    }
    argv.extend(cfg["Entrypoint"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c", IN_IMAGE, "sh"]).arg(&image.rootfs).arg(pod.sa.path()).arg(user).args(&argv);
    cmd.env_clear();
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    for kv in cfg["Env"].as_array().unwrap() {
        let (k, v) = kv.as_str().unwrap().split_once('=').unwrap();
        if k != "PATH" {
            cmd.env(k, v);
        }
    }
    cmd.env("KUBERNETES_SERVICE_HOST", "127.0.0.1").env("KUBERNETES_SERVICE_PORT", &pod.port);
    cmd.output().expect("unshare and chroot (util-linux, coreutils)")
}

/// `--version` and `status` from the image's root, on a reader's
/// service account: the image holds all the binary needs (loader, libc, CA
/// bundle, a user that is not root).
pub fn check_image_runs(c: &TestCluster, image: &Image, emulator: Option<&Path>, version: &str) {
    let pod = reader_pod(c);
    let out = run(image, &pod, emulator, &["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "--version in the image: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(version.trim_start_matches('v')), "{text}");
    let out = run(image, &pod, emulator, &["status", "-o", "json"]);
    assert!(out.status.success(), "status in the image: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["context"], "in-cluster");
    assert_eq!(report["pools"][0]["name"], "default-ipv4-ippool");
}
