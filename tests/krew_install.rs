//! The krew manifest passes krew's own rules, read the way krew reads it
//! (YAML 1.1 to JSON with sigs.k8s.io/yaml, then a typed decode), with an
//! entry for each of the five platforms; the archive `make dist` builds for
//! linux/amd64 holds exactly what its entry names and installs the way krew
//! installs it: checksum, extract, LICENSE, `kubectl-<name>` link on PATH;
//! then a real kubectl runs `kubectl ippool status` through it against the
//! local cluster, and so does the in-cluster image's linux/amd64 root
//! filesystem. The other platforms' archives: `make dist-check`
//! (tests/dist_check.rs).

mod common;
mod krew;

use std::path::Path;
use std::process::Command;

use krew::{decode, krew_violations, load};
use serde_json::Value;

#[test]
fn committed_manifest_follows_krew_rules() {
    let path = common::repo_root().join("plugin.yaml");
    // krew wants <name>.yaml; the repository keeps it as plugin.yaml, so
    // check it under the name krew-index would give it.
    let m = load(&path);
    let errs = krew_violations(Path::new("ippool.yaml"), &m);
    assert!(errs.is_empty(), "{errs:#?}");
    assert_eq!(
        m.pointer("/spec/version").unwrap(),
        &Value::String(format!("v{}", env!("CARGO_PKG_VERSION"))),
        "plugin.yaml version must match Cargo.toml"
    );
    // One entry per platform, each naming its own archive and the files
    // that platform needs (an .exe and a .cmd helper on Windows).
    assert_eq!(m["spec"]["platforms"].as_array().unwrap().len(), krew::PLATFORMS.len());
    for (os, arch) in krew::PLATFORMS {
        let e = krew::entry(&m, os, arch).unwrap_or_else(|| panic!("plugin.yaml has no {os}/{arch} entry"));
        let (exe, helper, ext) = if os == "windows" {
            ("kubectl-ippool.exe", "kubectl_complete-ippool.cmd", "zip")
        } else {
            ("kubectl-ippool", "kubectl_complete-ippool", "tar.gz")
        };
        let uri = e["uri"].as_str().unwrap();
        assert!(uri.ends_with(&format!("/kubectl-ippool_{}_{os}_{arch}.{ext}", m["spec"]["version"].as_str().unwrap())));
        assert_eq!(e["bin"], exe, "{os}/{arch}");
        let files: Vec<&str> = e["files"].as_array().unwrap().iter().map(|f| f["from"].as_str().unwrap()).collect();
        assert_eq!(files, [exe, helper, "LICENSE"], "{os}/{arch}");
    }
}

#[test]
fn an_unquoted_sha256_is_refused_as_krew_refuses_it() {
    let text = std::fs::read_to_string(common::repo_root().join("plugin.yaml")).unwrap();
    let quoted = text.lines().find(|l| l.trim_start().starts_with("sha256:")).unwrap().to_string();
    for bare in ["0".repeat(64), format!("{}e100", "1".repeat(60))] {
        let unquoted = text.replace(&quoted, &format!("    sha256: {bare}"));
        let err = decode(&unquoted).expect_err("an all-digit (or digits-e-digits) sha256 is a number to krew");
        assert!(err.contains("sha256") || err.contains("expected a string"), "{err}");
    }
}

#[test]
fn dist_archive_installs_like_krew_and_runs_through_kubectl() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("ippool.yaml");
    std::fs::copy(common::repo_root().join("plugin.yaml"), &manifest).unwrap();
    let mut dist = Command::new(common::repo_root().join("scripts/dist.sh"));
    // The variables cargo sets for a test process would make the nested
    // cargo build (and the next cargo test) rebuild half the dependencies.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_") && k != "CARGO_TARGET_DIR" && k != "CARGO_HOME" {
            dist.env_remove(&*k);
        }
    }
    // linux/amd64 alone (the one platform this machine runs natively), and
    // its image, built as cheaply as cargo can: `make dist-check` builds
    // and checks the rest.
    let st = dist
        .env("DIST_PROFILE", "dist-check")
        .env("DIST_PLATFORMS", "linux/amd64")
        .env("DIST_IMAGE", "1")
        .env("DIST_DIR", tmp.path())
        .env("DIST_MANIFEST", &manifest)
        .status()
        .unwrap();
    assert!(st.success(), "scripts/dist.sh failed");

    let m = load(&manifest);
    let errs = krew_violations(&manifest, &m);
    assert!(errs.is_empty(), "{errs:#?}");
    assert_eq!(m["spec"]["platforms"].as_array().unwrap().len(), 1, "the manifest names the archives built");
    let platform = krew::entry(&m, "linux", "amd64").expect("a linux/amd64 entry");
    let unpacked = krew::check_archive(tmp.path(), platform, &tmp.path().join("unpacked"));

    // Install as krew does: apply the `files` operations into
    // store/<name>/<version>, check for a LICENSE, link bin as
    // kubectl-<name> into krew's bin dir.
    let version = m["spec"]["version"].as_str().unwrap();
    let store = tmp.path().join("krew/store/ippool").join(version);
    std::fs::create_dir_all(&store).unwrap();
    for op in platform["files"].as_array().expect("files operations") {
        let from = unpacked.join(op["from"].as_str().unwrap());
        let to = store.join(op["to"].as_str().unwrap()).join(from.file_name().unwrap());
        assert!(from.exists(), "files: {} is not in the archive", from.display());
        std::fs::rename(&from, &to).unwrap();
    }
    let has_license = std::fs::read_dir(&store)
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().to_lowercase().starts_with("license"));
    assert!(has_license, "krew requires a LICENSE file in the archive");
    let bin = store.join(platform["bin"].as_str().unwrap());
    assert!(bin.exists());
    let bindir = tmp.path().join("krew/bin");
    std::fs::create_dir_all(&bindir).unwrap();
    std::os::unix::fs::symlink(&bin, bindir.join("kubectl-ippool")).unwrap();

    let cluster = common::TestCluster::seed();
    let path = format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new(common::kubesim_bin("kubectl"))
        .env("PATH", &path)
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["ippool", "status"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl ippool status failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("default-ipv4-ippool") && stdout.contains("192.168.0.0/16"), "{stdout}");
    let plugins =
        Command::new(common::kubesim_bin("kubectl")).env("PATH", &path).args(["plugin", "list"]).output().unwrap();
    assert!(String::from_utf8_lossy(&plugins.stdout).contains("kubectl-ippool"));

    // Completion through kubectl: install the helper with the line `kubectl
    // ippool completion` prints (krew does not link it), then ask kubectl.
    let out = Command::new(common::kubesim_bin("kubectl"))
        .env("PATH", &path)
        .args(["ippool", "completion"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shipped = std::fs::read(store.join("kubectl_complete-ippool")).unwrap();
    assert_eq!(out.stdout, shipped, "the archive's helper is the one the binary prints");
    let install = String::from_utf8_lossy(&out.stderr).lines().last().unwrap().to_string();
    let st = Command::new("sh")
        .args(["-c", &format!("kubectl() {{ \"{}\" \"$@\"; }}; {install}", common::kubesim_bin("kubectl").display())])
        .env("PATH", &path)
        .env("KREW_ROOT", tmp.path().join("krew"))
        .status()
        .unwrap();
    assert!(st.success(), "install line failed: {install}");
    let complete = |words: &[&str]| {
        let out = Command::new(common::kubesim_bin("kubectl"))
            .env("PATH", &path)
            .env("KUBECONFIG", &cluster.kubeconfig)
            .arg("__complete")
            .arg("ippool")
            .args(words)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let values: Vec<String> = text.lines().map(|l| l.split('\t').next().unwrap().to_string()).collect();
        (values, text)
    };
    let (values, text) = complete(&["mig"]);
    assert_eq!(values, ["migrate", ":4"], "{text}");
    let (values, text) = complete(&["migrate", "--from", ""]);
    assert_eq!(values, ["default-ipv4-ippool", ":4"], "{text}");
    let (values, text) = complete(&["verify", "--to=def"]);
    assert_eq!(values, ["--to=default-ipv4-ippool", ":4"], "{text}");
    let (values, text) = complete(&["status", "--no-h"]);
    assert_eq!(values, ["--no-headers", ":4"], "{text}");

    // The in-cluster image dist.sh wrote beside the archive, run as a pod
    // runs it, on the same cluster.
    let image = krew::image::unpack(
        &tmp.path().join(format!("kubectl-ippool_{version}_image.oci.tar")),
        version,
        "amd64",
        &tmp.path().join("image-amd64"),
    );
    krew::image::check_image_runs(&cluster, &image, None, version);
}
