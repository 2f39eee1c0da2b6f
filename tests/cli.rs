//! Black-box CLI tests that need no cluster: help, flag errors, and the
//! one-line errors for a bad kubeconfig or an unreachable server.

use assert_cmd::Command;
use predicates::prelude::*;

fn ippool() -> Command {
    let mut c = Command::cargo_bin("kubectl-ippool").unwrap();
    c.env_remove("KUBECONFIG").env("HOME", "/nonexistent-home");
    c
}

fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let p = dir.join("config");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: dev\nclusters:\n- name: dev\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: dev\n  context:\n    cluster: dev\n    user: dev\nusers:\n- name: dev\n  user:\n    token: t\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn help_shows_kubectl_usage_and_examples() {
    let out = ippool().arg("--help").assert().success().get_output().stdout.clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("Usage: kubectl ippool"), "{text}");
    assert!(text.contains("kubectl ippool migrate --from default-ipv4-ippool --to 10.0.0.0/16"));
    for flag in ["--kubeconfig", "--context", "--cluster", "--user", "--namespace", "--as", "--request-timeout"] {
        assert!(text.contains(flag), "missing {flag} in help");
    }
}

#[test]
fn each_verb_has_help_with_examples() {
    for verb in ["status", "migrate", "verify"] {
        ippool().args([verb, "--help"]).assert().success().stdout(predicate::str::contains("kubectl ippool"));
    }
}

#[test]
fn missing_kubeconfig_is_one_line_exit_2() {
    ippool()
        .args(["status", "--kubeconfig", "/nonexistent/kubeconfig"])
        .assert()
        .code(2)
        .stderr(predicate::str::starts_with("error: kubeconfig: /nonexistent/kubeconfig"));
}

#[test]
fn malformed_kubeconfig_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config");
    std::fs::write(&p, "this: is: not: yaml: [").unwrap();
    ippool()
        .args(["status", "--kubeconfig"])
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("error: kubeconfig"));
}

#[test]
fn unknown_context_names_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let p = kubeconfig(dir.path(), "https://127.0.0.1:1");
    ippool()
        .args(["status", "--context", "prod", "--kubeconfig"])
        .arg(&p)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("context \"prod\" not found; known contexts: dev"));
}

#[test]
fn unreachable_server_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let out = ippool()
        .args(["status", "--request-timeout", "5s", "--kubeconfig"])
        .arg(&p)
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("error: cannot reach the Kubernetes API server at https://127.0.0.1:1"), "{text}");
    assert_eq!(text.trim_end().lines().count(), 1, "{text}");
}

#[test]
fn kubeconfig_env_with_several_files_is_merged() {
    let dir = tempfile::tempdir().unwrap();
    let a = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let b = dir.path().join("empty");
    std::fs::write(&b, "apiVersion: v1\nkind: Config\n").unwrap();
    // Context "dev" comes from the first file; the server is unreachable,
    // which proves the merged config was used.
    ippool()
        .env("KUBECONFIG", format!("{}:{}", b.display(), a.display()))
        .args(["status", "--request-timeout", "5s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot reach the Kubernetes API server at https://127.0.0.1:1"));
}

#[test]
fn bad_flags_are_usage_errors() {
    ippool().args(["status", "-o", "xml"]).assert().code(2);
    ippool()
        .args(["status", "--request-timeout", "soon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a duration"));
    ippool().args(["frobnicate"]).assert().code(2);
}

/// The `-v=6` log lines of each API request attempt (`API request N: GET ...`).
fn attempts(stderr: &[u8], path: &str) -> usize {
    String::from_utf8_lossy(stderr).lines().filter(|l| l.contains("API request ") && l.ends_with(path)).count()
}

/// A refused connection (nothing listens) fails on the first attempt: no
/// retry can open a closed port. Counted from the per-attempt log lines of
/// `-v=6` (one per attempt, retries included), not from a clock.
#[test]
fn refused_connection_is_not_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("https://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let p = kubeconfig(dir.path(), &server);
    let out = ippool().args(["status", "-v=6", "--kubeconfig"]).arg(&p).assert().code(2).get_output().clone();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(attempts(&out.stderr, "/version"), 1, "{text}");
    assert!(!text.contains("retrying"), "{text}");
    assert!(text.contains(&format!("cannot reach the Kubernetes API server at {server}")), "{text}");
}

/// The control: a server that accepts each connection and closes it without
/// an answer is a lost connection, which a read still retries. The listener
/// counts the connections; the log counts the attempts.
#[test]
fn dropped_connection_is_retried() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("https://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let p = kubeconfig(dir.path(), &server);
    let out = ippool().args(["status", "-v=6", "--kubeconfig"]).arg(&p).assert().code(2).get_output().clone();
    let text = String::from_utf8_lossy(&out.stderr);
    let n = attempts(&out.stderr, "/version");
    assert!(n > 1, "a lost connection on a read is retried: {text}");
    assert_eq!(accepted.load(Ordering::SeqCst), n, "one connection per attempt: {text}");
    assert_eq!(text.matches("(connection lost)").count(), n - 1, "{text}");
}

/// stderr of `kubectl-ippool -v=6 status` against a closed port, run on a
/// pseudo-terminal (`script`) or not, with NO_COLOR set or not: its log
/// lines are the coloured output.
fn log_output(on_terminal: bool, no_color: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let bin = assert_cmd::cargo::cargo_bin("kubectl-ippool");
    let line = format!("{} -v=6 status --kubeconfig {} --request-timeout 2s", bin.display(), cfg.display());
    let mut cmd = if on_terminal {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &line, "/dev/null"]);
        c
    } else {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", &format!("{line} 2>&1")]);
        c
    };
    cmd.env_remove("NO_COLOR").env_remove("RUST_LOG");
    if let Some(v) = no_color {
        cmd.env("NO_COLOR", v);
    }
    let out = cmd.output().expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("API request 1"), "no log line to judge by: {text}");
    text
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    assert!(log_output(true, None).contains('\x1b'), "a terminal gets colour");
    assert!(!log_output(true, Some("1")).contains('\x1b'), "NO_COLOR=1 on a terminal: no colour");
    assert!(!log_output(false, None).contains('\x1b'), "a pipe gets no colour");
}

/// COMPREPLY of the standalone bash script for a command line whose last
/// word is being completed.
fn bash_complete(line: &[&str]) -> String {
    let bin = assert_cmd::cargo::cargo_bin("kubectl-ippool");
    let script = std::process::Command::new(&bin).args(["completion", "bash"]).output().unwrap();
    assert!(script.status.success());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.bash");
    std::fs::write(&path, &script.stdout).unwrap();
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let cword = line.len() - 1;
    let prev = if cword > 0 { line[cword - 1] } else { "" };
    let prog = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={cword}; _kubectl__ippool kubectl-ippool '{}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        words.join(" "),
        line[cword]
    );
    let out = std::process::Command::new("bash").args(["-c", &prog]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn standalone_completion_scripts() {
    assert_eq!(bash_complete(&["kubectl-ippool", "mig"]), "migrate\n");
    assert_eq!(bash_complete(&["kubectl-ippool", "migrate", "--st"]), "--strategy\n");
    assert_eq!(bash_complete(&["kubectl-ippool", "status", "-o", ""]), "wide\njson\nyaml\n");
    for shell in ["zsh", "fish"] {
        let out = ippool().args(["completion", shell]).assert().success().get_output().stdout.clone();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("kubectl-ippool") && text.contains("migrate"), "{shell}: {text}");
    }
}

#[test]
fn completion_without_a_shell_prints_the_kubectl_helper_and_its_install() {
    let out = ippool().arg("completion").assert().success().get_output().clone();
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.starts_with("#!/bin/sh\n") && script.contains("exec kubectl-ippool __complete \"$@\""), "{script}");
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains("kubectl ippool completion > \"${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-ippool\""),
        "{note}"
    );
}
