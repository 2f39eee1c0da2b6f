//! The krew manifest passes krew's own rules, read the way krew reads it
//! (YAML 1.1 to JSON with sigs.k8s.io/yaml, then a typed decode), and the
//! archive `make dist` builds installs the way krew installs it: checksum,
//! extract, LICENSE, `kubectl-<name>` link on PATH; then a real kubectl runs
//! `kubectl ippool status` through it against the local cluster.

mod common;

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

/// krew's manifest types (pkg/index/types.go) as Rust types: a field whose
/// YAML reads as another type (an unquoted all-digit sha256 is a number in
/// YAML 1.1) fails to decode here as it fails in krew's json.Decode.
/// Unknown fields are refused too, which catches misspelt keys krew would
/// silently drop.
// Decoded for the types alone; the checks read the JSON.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Plugin {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: PluginSpec,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

// Decoded for the types alone; the checks read the JSON.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PluginSpec {
    version: String,
    short_description: String,
    description: String,
    #[serde(default)]
    caveats: Option<String>,
    homepage: String,
    platforms: Vec<Platform>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Platform {
    uri: String,
    sha256: String,
    selector: Selector,
    #[serde(default)]
    files: Option<Vec<FileOperation>>,
    #[serde(default)]
    license: Option<String>,
    bin: String,
}

// Decoded for the types alone; the checks read the JSON.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Selector {
    match_labels: std::collections::BTreeMap<String, String>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOperation {
    from: String,
    to: String,
}

/// krew's validation rules (validate.go, validate-krew-manifest), returning
/// every violation.
fn krew_violations(file: &Path, m: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    let name = m.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if m["apiVersion"] != "krew.googlecontainertools.github.com/v1alpha2" || m["kind"] != "Plugin" {
        errs.push("apiVersion/kind must be krew.googlecontainertools.github.com/v1alpha2 Plugin".into());
    }
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        errs.push(format!("metadata.name {name:?} must match ^[\\w-]+$"));
    }
    if file.file_stem().and_then(|s| s.to_str()) != Some(name) {
        errs.push(format!("file name {} must be {name}.yaml", file.display()));
    }
    let version = m.pointer("/spec/version").and_then(Value::as_str).unwrap_or("");
    let semver_ok = version.strip_prefix('v').is_some_and(|v| {
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    });
    if !semver_ok {
        errs.push(format!("spec.version {version:?} must be a v-prefixed semver"));
    }
    let short = m.pointer("/spec/shortDescription").and_then(Value::as_str).unwrap_or("");
    if short.is_empty() || short.contains('\n') {
        errs.push("spec.shortDescription must be one non-empty line".into());
    }
    if m.pointer("/spec/description").and_then(Value::as_str).unwrap_or("").is_empty() {
        errs.push("spec.description is required".into());
    }
    let platforms = m.pointer("/spec/platforms").and_then(Value::as_array).cloned().unwrap_or_default();
    if platforms.is_empty() {
        errs.push("spec.platforms must not be empty".into());
    }
    for (i, p) in platforms.iter().enumerate() {
        let uri = p["uri"].as_str().unwrap_or("");
        if !(uri.starts_with("https://") && (uri.ends_with(".tar.gz") || uri.ends_with(".zip"))) {
            errs.push(format!("platform {i}: uri must be an https .tar.gz/.zip"));
        }
        let sha = p["sha256"].as_str().unwrap_or("");
        if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
            errs.push(format!("platform {i}: sha256 must be 64 lower-case hex digits"));
        }
        if p["bin"].as_str().unwrap_or("").is_empty() {
            errs.push(format!("platform {i}: bin is required"));
        }
        let labels = p.pointer("/selector/matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
        if labels.is_empty() || labels.keys().any(|k| k != "os" && k != "arch") {
            errs.push(format!("platform {i}: selector must use only os/arch"));
        }
    }
    errs
}

/// YAML to JSON as krew's yaml.ToJSON does it: `tools/yaml2json`, a few
/// lines of Go around sigs.k8s.io/yaml (from the kubesim module cache).
fn krew_json(yaml: &str) -> Value {
    use std::io::Write;
    let mut child = Command::new("go")
        .args(["run", "."])
        .current_dir(common::repo_root().join("tools/yaml2json"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=readonly")
        .env("GOSUMDB", "off")
        .env("PATH", format!("/usr/local/go/bin:{}", std::env::var("PATH").unwrap_or_default()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("go (needed for tools/yaml2json; it builds kubesim too)");
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "yaml2json: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The manifest as krew sees it: JSON from krew's YAML reading, which must
/// also decode into krew's typed Plugin.
fn decode(yaml: &str) -> Result<Value, String> {
    let json = krew_json(yaml);
    serde_json::from_value::<Plugin>(json.clone()).map_err(|e| format!("krew cannot decode the manifest: {e}"))?;
    Ok(json)
}

fn load(path: &Path) -> Value {
    decode(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The newest glibc symbol version the dynamic symbol table asks for.
fn newest_glibc(bin: &Path) -> (u32, u32) {
    let out = Command::new("objdump").arg("-T").arg(bin).output().expect("objdump (binutils)");
    assert!(out.status.success(), "objdump -T: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let versions: Vec<(u32, u32)> = text
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .collect();
    assert!(!versions.is_empty(), "no GLIBC symbol versions in {}: {text}", bin.display());
    versions.into_iter().max().unwrap()
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

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
    let st =
        dist.env("DIST_PROFILE", "dev").env("DIST_DIR", tmp.path()).env("DIST_MANIFEST", &manifest).status().unwrap();
    assert!(st.success(), "scripts/dist.sh failed");

    let m = load(&manifest);
    let errs = krew_violations(&manifest, &m);
    assert!(errs.is_empty(), "{errs:#?}");
    let platform = &m["spec"]["platforms"][0];
    let uri = platform["uri"].as_str().unwrap();
    let archive = tmp.path().join(uri.rsplit('/').next().unwrap());
    assert!(archive.exists(), "archive {} named by the uri was not built", archive.display());
    assert_eq!(sha256(&archive), platform["sha256"].as_str().unwrap(), "manifest sha256 does not match the archive");

    // Install as krew does: extract, apply the `files` operations into
    // store/<name>/<version>, check for a LICENSE, link bin as
    // kubectl-<name> into krew's bin dir.
    let version = m["spec"]["version"].as_str().unwrap();
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    assert!(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked).status().unwrap().success());
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
    let newest = newest_glibc(&bin);
    assert!(
        newest <= (2, 17),
        "the binary needs GLIBC_{}.{}: it would not start on RHEL 8 or Amazon Linux 2",
        newest.0,
        newest.1
    );
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
}
