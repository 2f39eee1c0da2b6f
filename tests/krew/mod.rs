//! What the krew tests share: krew's manifest types and rules, the
//! manifest read the way krew reads it, and the checks of one platform's
//! archive (checksum, exactly the files its entry names, the binary's
//! kind) and of the in-cluster image.
#![allow(dead_code)]

pub mod image;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use crate::common;

/// krew's manifest types (pkg/index/types.go) as Rust types: a field whose
/// YAML reads as another type (an unquoted all-digit sha256 is a number in
/// YAML 1.1) fails to decode here as it fails in krew's json.Decode.
/// Unknown fields are refused too, which catches misspelt keys krew would
/// silently drop.
// Decoded for the types alone; the checks read the JSON.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Plugin {
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
pub fn krew_violations(file: &Path, m: &Value) -> Vec<String> {
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
pub fn krew_json(yaml: &str) -> Value {
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
pub fn decode(yaml: &str) -> Result<Value, String> {
    let json = krew_json(yaml);
    serde_json::from_value::<Plugin>(json.clone()).map_err(|e| format!("krew cannot decode the manifest: {e}"))?;
    Ok(json)
}

pub fn load(path: &Path) -> Value {
    decode(&std::fs::read_to_string(path).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The newest glibc symbol version an ELF binary asks for (readelf reads
/// every machine's ELF; objdump here only x86's); None when it asks for
/// none (static).
pub fn newest_glibc(bin: &Path) -> Option<(u32, u32)> {
    let out = Command::new("readelf").arg("-V").arg(bin).output().expect("readelf (binutils)");
    assert!(out.status.success(), "readelf -V: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
}

pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The five platforms every release ships, as krew's selector labels.
pub const PLATFORMS: [(&str, &str); 5] =
    [("linux", "amd64"), ("linux", "arm64"), ("darwin", "amd64"), ("darwin", "arm64"), ("windows", "amd64")];

/// The entry of one platform in a decoded manifest.
pub fn entry<'a>(m: &'a Value, os: &str, arch: &str) -> Option<&'a Value> {
    m["spec"]["platforms"].as_array()?.iter().find(|p| {
        p.pointer("/selector/matchLabels/os") == Some(&Value::from(os))
            && p.pointer("/selector/matchLabels/arch") == Some(&Value::from(arch))
    })
}

/// Every regular file under `dir`, as paths relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// Checks one platform's entry against the archive `dist` holds under the
/// uri's file name: the sha256 matches, the archive unpacks to exactly the
/// files the entry names, `bin` is one of them and is a binary of the
/// entry's os/arch. Returns the directory it unpacked into.
pub fn check_archive(dist: &Path, entry: &Value, into: &Path) -> PathBuf {
    let os = entry.pointer("/selector/matchLabels/os").and_then(Value::as_str).unwrap();
    let arch = entry.pointer("/selector/matchLabels/arch").and_then(Value::as_str).unwrap();
    let uri = entry["uri"].as_str().unwrap();
    let archive = dist.join(uri.rsplit('/').next().unwrap());
    assert!(archive.exists(), "{os}/{arch}: archive {} named by the uri was not built", archive.display());
    assert_eq!(sha256(&archive), entry["sha256"].as_str().unwrap(), "{os}/{arch}: sha256 does not match the archive");

    let unpacked = into.join(format!("{os}-{arch}"));
    std::fs::create_dir_all(&unpacked).unwrap();
    let st = if uri.ends_with(".zip") {
        Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&archive).arg(&unpacked).status().unwrap()
    } else {
        Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked).status().unwrap()
    };
    assert!(st.success(), "{os}/{arch}: cannot unpack {}", archive.display());
    let mut named: Vec<String> =
        entry["files"].as_array().unwrap().iter().map(|f| f["from"].as_str().unwrap().to_string()).collect();
    named.sort();
    assert_eq!(files_under(&unpacked), named, "{os}/{arch}: the archive must hold exactly the files its entry names");
    let bin = unpacked.join(entry["bin"].as_str().unwrap());
    assert!(named.contains(&entry["bin"].as_str().unwrap().to_string()), "{os}/{arch}: bin is not among the files");
    check_binary_kind(os, arch, &bin);
    unpacked
}

/// `file`'s reading of the binary, plus the glibc it asks for (linux) and
/// the libraries it loads (darwin).
pub fn check_binary_kind(os: &str, arch: &str, bin: &Path) {
    let out = Command::new("file").arg("-b").arg(bin).output().expect("file");
    let kind = String::from_utf8_lossy(&out.stdout).into_owned();
    let expected: &[&str] = match (os, arch) {
        ("linux", "amd64") => &["ELF 64-bit LSB", "x86-64"],
        ("linux", "arm64") => &["ELF 64-bit LSB", "ARM aarch64"],
        ("darwin", "amd64") => &["Mach-O 64-bit x86_64 executable"],
        ("darwin", "arm64") => &["Mach-O 64-bit arm64 executable"],
        ("windows", "amd64") => &["PE32+ executable (console) x86-64"],
        _ => panic!("no expectation for {os}/{arch}"),
    };
    for e in expected {
        assert!(kind.contains(e), "{os}/{arch}: {} is `{}`, expected {e}", bin.display(), kind.trim());
    }
    if os == "linux" && !kind.contains("statically linked") {
        let newest = newest_glibc(bin).expect("a dynamic linux binary names its glibc versions");
        assert!(
            newest <= (2, 17),
            "{os}/{arch}: the binary needs GLIBC_{}.{}: it would not start on RHEL 7/8 or Amazon Linux 2",
            newest.0,
            newest.1
        );
    }
    if (os, arch) == ("darwin", "arm64") {
        // Apple silicon kills an arm64 executable whose ad-hoc signature
        // does not match its pages (zig signs at link; a later strip breaks
        // it). Intel Macs run unsigned binaries.
        let script = common::repo_root().join("tests/krew/adhoc_signature.py");
        let out = Command::new("python3").arg(script).arg(bin).output().unwrap();
        assert!(out.status.success(), "{os}/{arch}: {}", String::from_utf8_lossy(&out.stderr));
    }
    if os == "darwin" {
        for lib in macho_dylibs(bin) {
            assert!(
                lib.starts_with("/usr/lib/") || lib.starts_with("/System/Library/Frameworks/"),
                "{os}/{arch}: loads {lib}, which is not on every Mac"
            );
        }
    }
}

/// The dylibs a 64-bit Mach-O executable loads (LC_LOAD_DYLIB and its weak
/// and re-export forms), read from its load commands.
pub fn macho_dylibs(bin: &Path) -> Vec<String> {
    let data = std::fs::read(bin).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xfeed_facf, "{} is not a 64-bit Mach-O", bin.display());
    let ncmds = u32_at(16) as usize;
    let (mut at, mut libs) = (32, Vec::new());
    for _ in 0..ncmds {
        let (cmd, size) = (u32_at(at), u32_at(at + 4) as usize);
        if matches!(cmd, 0xc | 0x8000_0018 | 0x8000_001f) {
            let name = &data[at + u32_at(at + 8) as usize..at + size];
            libs.push(String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap()).into_owned());
        }
        at += size;
    }
    assert!(!libs.is_empty(), "{} loads no dylib (not even libSystem)", bin.display());
    libs
}
