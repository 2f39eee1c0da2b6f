//! `make dist-check`: the archives and image `scripts/dist.sh` built for
//! every platform (into `$DIST_CHECK_DIR`, default target/dist-check, with
//! its manifest as ippool.yaml there) checked as krew and a runtime would
//! use them, and the foreign binaries run against the local cluster under
//! emulation: linux/arm64 under qemu-user, windows/amd64 under wine. Slow
//! (four cross builds, emulated runs), so these tests are `#[ignore]`d in
//! `make test` and run by `make dist-check` with `--ignored`.

mod common;
mod krew;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn dist_dir() -> PathBuf {
    std::env::var_os("DIST_CHECK_DIR").map_or_else(|| common::repo_root().join("target/dist-check"), PathBuf::from)
}

fn dist_tools() -> PathBuf {
    std::env::var_os("DIST_TOOLS").map_or_else(
        || PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/kubectl-ippool/dist-tools"),
        PathBuf::from,
    )
}

fn manifest() -> Value {
    let path = dist_dir().join("ippool.yaml");
    assert!(path.exists(), "{} is missing: run `make dist-check`, which builds it first", path.display());
    krew::load(&path)
}

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// One platform's archive, checked and unpacked under `tmp`.
fn unpacked(os: &str, arch: &str, tmp: &Path) -> (PathBuf, Value) {
    let m = manifest();
    let e = krew::entry(&m, os, arch).unwrap_or_else(|| panic!("no {os}/{arch} entry")).clone();
    (krew::check_archive(&dist_dir(), &e, tmp), e)
}

#[test]
#[ignore = "make dist-check"]
fn every_platform_archive_holds_what_its_entry_names() {
    let m = manifest();
    let errs = krew::krew_violations(&dist_dir().join("ippool.yaml"), &m);
    assert!(errs.is_empty(), "{errs:#?}");
    assert_eq!(m["spec"]["platforms"].as_array().unwrap().len(), krew::PLATFORMS.len());
    let tmp = tempfile::tempdir().unwrap();
    for (os, arch) in krew::PLATFORMS {
        let e = krew::entry(&m, os, arch).unwrap_or_else(|| panic!("no {os}/{arch} entry"));
        krew::check_archive(&dist_dir(), e, tmp.path());
    }
    // The Windows helper hands the words to the binary, as the unix one does.
    let cmd = std::fs::read_to_string(tmp.path().join("windows-amd64/kubectl_complete-ippool.cmd")).unwrap();
    assert!(cmd.contains("\r\nkubectl-ippool __complete %*\r\n"), "{cmd:?}");
}

#[test]
#[ignore = "make dist-check"]
fn linux_arm64_runs_under_qemu_and_from_its_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, e) = unpacked("linux", "arm64", tmp.path());
    let bin = dir.join(e["bin"].as_str().unwrap());
    let qemu = PathBuf::from("/usr/bin/qemu-aarch64-static");
    assert!(qemu.exists(), "qemu-user-static is missing: scripts/dist-tools.sh check installs it");
    let c = common::TestCluster::seed();
    // The loader and libc of Debian's libc6:arm64 (dist-tools.sh), where
    // an arm64 Debian has them.
    let run = |args: &[&str]| {
        Command::new(&qemu).arg(&bin).args(args).env("KUBECONFIG", &c.kubeconfig).output().expect("qemu-aarch64-static")
    };
    let out = run(&["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["status"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("default-ipv4-ippool") && stdout.contains("192.168.0.0/16"), "{stdout}");

    let version = manifest()["spec"]["version"].as_str().unwrap().to_string();
    let image = krew::image::unpack(
        &dist_dir().join(format!("kubectl-ippool_{version}_image.oci.tar")),
        &version,
        "arm64",
        &tmp.path().join("image-arm64"),
    );
    krew::image::check_image_runs(&c, &image, Some(&qemu), &version);
}

#[test]
#[ignore = "make dist-check"]
fn windows_amd64_runs_under_wine_with_its_completion_helper() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, e) = unpacked("windows", "amd64", tmp.path());
    // wine 8.0 has no bcryptprimitives.dll (Rust's std asks it for
    // ProcessPrng); a shim built with the dist tools' zig, beside the .exe.
    let zig = dist_tools().join("ziglang-0.17.1/ziglang/zig");
    let st = Command::new(&zig)
        .args(["cc", "-shared", "-O2", "-target", "x86_64-windows-gnu", "-o"])
        .arg(dir.join("bcryptprimitives.dll"))
        .arg(common::repo_root().join("tests/krew/prng_shim.c"))
        .arg("-ladvapi32")
        .status()
        .expect("zig (scripts/dist-tools.sh)");
    assert!(st.success(), "cannot build the ProcessPrng shim");
    let c = common::TestCluster::seed();
    // A prefix kept between runs: creating one takes a while.
    let prefix = dist_dir().join("wineprefix");
    let wine = |args: &[&std::ffi::OsStr]| {
        // Debian 12's wine64 package has its loader here (no /usr/bin/wine
        // without the wine package).
        Command::new("/usr/lib/wine/wine64")
            .args(args)
            .current_dir(&dir)
            .env("WINEPREFIX", &prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            // Z: is wine's drive for /: the kubeconfig as a Windows path.
            .env("KUBECONFIG", format!("Z:{}", c.kubeconfig.display()).replace('/', "\\"))
            .env("WINEPATH", format!("Z:{}", dir.display()).replace('/', "\\"))
            .output()
            .expect("wine64 (Debian: scripts/dist-tools.sh check installs it)")
    };
    let exe = dir.join(e["bin"].as_str().unwrap());
    let out = wine(&[exe.as_os_str(), "--version".as_ref()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = wine(&[exe.as_os_str(), "status".as_ref()]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("default-ipv4-ippool") && stdout.contains("192.168.0.0/16"), "{stdout}");
    // kubectl on Windows runs kubectl_complete-ippool(.cmd, by PATHEXT)
    // with the words after `ippool`: through cmd.exe, as CreateProcess does.
    let out = wine(&["cmd".as_ref(), "/c".as_ref(), "kubectl_complete-ippool.cmd".as_ref(), "mig".as_ref()]);
    assert!(out.status.success(), "{}", text(&out));
    let values: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().trim().to_string())
        .collect();
    assert_eq!(values, ["migrate", ":4"], "{}", text(&out));
}
