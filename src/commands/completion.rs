//! Shell completion. `kubectl ippool <TAB>` (kubectl 1.26+) runs the
//! executable `kubectl_complete-ippool` found on PATH with the words typed
//! after `ippool`, the last one being the word to complete; that script
//! hands them to `kubectl-ippool __complete`, which answers in cobra's
//! protocol: one candidate per line (`value<TAB>description`), then
//! `:<directive>`. Verbs and flags come from the clap definition, pool
//! names for pool flags (`value_name = "POOL"`), namespaces for `-n` and
//! kubeconfig entries from where they live. `completion bash|zsh|fish` prints clap's static script
//! for the standalone `kubectl-ippool`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Arg, Args};

use crate::cluster::calico::Calico;
use crate::cluster::listing::Freshness;
use crate::cluster::{kubeconfig, workloads, Cluster, ConnectOptions};
use crate::error::Result;
use crate::output::Printer;

const EXAMPLES: &str = "\
Examples:
  # kubectl ippool <TAB> (kubectl 1.26+): install the completion helper next to the plugin
  kubectl ippool completion > \"${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-ippool\" && chmod +x \"${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-ippool\"

  # The standalone kubectl-ippool in bash
  source <(kubectl-ippool completion bash)";

/// The one-line install of the helper, for a krew install (krew does not
/// link it by itself) or any directory on PATH.
pub const INSTALL: &str = "kubectl ippool completion > \"${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-ippool\" && chmod +x \"${KREW_ROOT:-$HOME/.krew}/bin/kubectl_complete-ippool\"";

/// `kubectl_complete-ippool`: what kubectl runs to complete `kubectl ippool ...`.
pub fn helper_script() -> String {
    format!(
        "#!/bin/sh\n\
         # Completes `kubectl ippool ...`: kubectl (1.26+) runs this, found on PATH,\n\
         # with the words after `ippool`. Install it next to kubectl-ippool:\n\
         #   {INSTALL}\n\
         exec kubectl-ippool __complete \"$@\"\n"
    )
}

#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct CompletionArgs {
    /// Print clap's completion script for the standalone kubectl-ippool in
    /// this shell; without it, print the kubectl_complete-ippool helper.
    #[arg(value_enum)]
    pub shell: Option<clap_complete::Shell>,
}

/// `cli` is the whole command line's definition (`Cli::command()`).
pub fn run(args: &CompletionArgs, cli: clap::Command) -> Result<u8> {
    let printer = Printer::new(Default::default());
    match args.shell {
        Some(shell) => {
            let mut buf = Vec::new();
            // The usage text says `kubectl ippool`; the standalone binary's
            // script must name `kubectl-ippool` at every level.
            let mut cmd = cli.name("kubectl-ippool").bin_name("kubectl-ippool").mut_subcommands(|s| {
                let name = format!("kubectl-ippool {}", s.get_name());
                s.bin_name(name)
            });
            clap_complete::generate(shell, &mut cmd, "kubectl-ippool", &mut buf);
            let mut script = String::from_utf8_lossy(&buf).into_owned();
            if shell == clap_complete::Shell::Bash {
                // clap_complete 4.6 names a subcommand's case label after its
                // bin name with '-' turned into its subcommand separator, but
                // the lookup after the root's with '-' as "__": make them meet.
                script = script.replace("kubectl__subcmd__ippool", "kubectl__ippool");
            }
            printer.stdout(&script)?;
        }
        None => {
            printer.stdout(&helper_script())?;
            printer.note(format!("# Install for `kubectl ippool <TAB>` (kubectl 1.26+):\n{INSTALL}"));
        }
    }
    Ok(0)
}

// cobra's ShellCompDirective bits.
const DIRECTIVE_DEFAULT: u32 = 0;
const DIRECTIVE_NO_FILE_COMP: u32 = 4;

/// What the word being completed needs.
#[derive(Debug, PartialEq)]
pub enum Want {
    /// These candidates (value, description), already filtered by prefix.
    Fixed(Vec<(String, String)>, u32),
    /// Pool names from the cluster; each candidate is `prefix` + name.
    Pools { prefix: String, partial: String },
    /// Namespace names from the cluster; each candidate is `prefix` + name.
    Namespaces { prefix: String, partial: String },
    /// Entries of the kubeconfig (contexts, clusters or users).
    KubeconfigEntries { what: Entry, prefix: String, partial: String },
}

#[derive(Debug, PartialEq, Clone, Copy)]
pub enum Entry {
    Context,
    Cluster,
    User,
}

/// `kubectl-ippool __complete <words...>`: candidates for the last word.
pub async fn complete(cli: clap::Command, words: &[String]) -> Result<u8> {
    let (want, connect) = analyse(cli, words);
    let (candidates, directive) = match want {
        Want::Fixed(c, d) => (c, d),
        Want::Pools { prefix, partial } => {
            let names = pool_names(&connect).await.unwrap_or_default();
            (
                filter(
                    names.into_iter().map(|(n, cidr)| (format!("{prefix}{n}"), cidr)),
                    &format!("{prefix}{partial}"),
                ),
                DIRECTIVE_NO_FILE_COMP,
            )
        }
        Want::Namespaces { prefix, partial } => {
            let names = namespace_names(&connect).await.unwrap_or_default();
            (
                filter(
                    names.into_iter().map(|n| (format!("{prefix}{n}"), String::new())),
                    &format!("{prefix}{partial}"),
                ),
                DIRECTIVE_NO_FILE_COMP,
            )
        }
        Want::KubeconfigEntries { what, prefix, partial } => {
            let names = kubeconfig::entry_names(
                connect.kubeconfig.as_deref(),
                match what {
                    Entry::Context => kubeconfig::EntryKind::Context,
                    Entry::Cluster => kubeconfig::EntryKind::Cluster,
                    Entry::User => kubeconfig::EntryKind::User,
                },
            );
            (
                filter(
                    names.into_iter().map(|n| (format!("{prefix}{n}"), String::new())),
                    &format!("{prefix}{partial}"),
                ),
                DIRECTIVE_NO_FILE_COMP,
            )
        }
    };
    Printer::new(Default::default()).stdout(&render(&candidates, directive))?;
    Ok(0)
}

/// cobra's answer: `value<TAB>description` lines, then `:<directive>`.
pub fn render(candidates: &[(String, String)], directive: u32) -> String {
    let mut out = String::new();
    for (value, desc) in candidates {
        out.push_str(value);
        if !desc.is_empty() {
            out.push('\t');
            out.push_str(desc.lines().next().unwrap_or(""));
        }
        out.push('\n');
    }
    out.push_str(&format!(":{directive}\n"));
    out
}

async fn pool_names(connect: &ConnectOptions) -> Result<Vec<(String, String)>> {
    let cluster = Cluster::connect(connect).await?;
    let calico = Calico::detect(&cluster).await?;
    Ok(calico.list_pools(&cluster).await?.into_iter().map(|p| (p.name, p.cidr.to_string())).collect())
}

async fn namespace_names(connect: &ConnectOptions) -> Result<Vec<String>> {
    let cluster = Cluster::connect(connect).await?;
    let namespaces = workloads::list_namespaces(&cluster, Freshness::Cached).await?;
    Ok(namespaces.into_iter().map(|n| n.name).collect())
}

fn filter(candidates: impl Iterator<Item = (String, String)>, partial: &str) -> Vec<(String, String)> {
    candidates.filter(|(v, _)| v.starts_with(partial)).collect()
}

/// Which word is being completed and how; plus the connection flags typed
/// so far, so pool names come from the cluster the command would use.
pub fn analyse(mut root: clap::Command, words: &[String]) -> (Want, ConnectOptions) {
    root.build();
    let (current, typed) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut connect = ConnectOptions { request_timeout: Some(Duration::from_secs(5)), ..Default::default() };
    let mut sub: Option<&clap::Command> = None;
    let mut pending: Option<Arg> = None;
    let mut after_dashes = false;
    for word in typed {
        let cmd = sub.unwrap_or(&root);
        if let Some(arg) = pending.take() {
            note_connection(&mut connect, &arg, word);
            continue;
        }
        if after_dashes || !word.starts_with('-') || word == "-" {
            if sub.is_none() {
                sub = root.find_subcommand(word);
            }
            continue;
        }
        if word == "--" {
            after_dashes = true;
            continue;
        }
        let (arg, inline) = find_flag(cmd, word);
        if let Some(arg) = arg {
            match inline {
                Some(v) => note_connection(&mut connect, &arg, &v),
                None if takes_value(&arg) => pending = Some(arg),
                None => {}
            }
        }
    }
    let cmd = sub.unwrap_or(&root);
    if let Some(arg) = pending {
        return (values_of(&arg, "", current), connect);
    }
    if !after_dashes && current.starts_with('-') {
        if let Some((name, partial)) = current.split_once('=') {
            if let (Some(arg), _) = find_flag(cmd, name) {
                return (values_of(&arg, &format!("{name}="), partial), connect);
            }
        }
        let flags = cmd
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_positional())
            .filter_map(|a| a.get_long().map(|l| (format!("--{l}"), help_of(a))))
            .collect::<Vec<_>>();
        return (Want::Fixed(filter(flags.into_iter(), current), DIRECTIVE_NO_FILE_COMP), connect);
    }
    if sub.is_none() {
        let verbs = root
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .map(|s| (s.get_name().to_string(), s.get_about().map(|a| a.to_string()).unwrap_or_default()))
            .collect::<Vec<_>>();
        return (Want::Fixed(filter(verbs.into_iter(), current), DIRECTIVE_NO_FILE_COMP), connect);
    }
    let positional = cmd.get_arguments().find(|a| a.is_positional()).cloned();
    let want = match positional {
        Some(arg) => values_of(&arg, "", current),
        None => Want::Fixed(Vec::new(), DIRECTIVE_NO_FILE_COMP),
    };
    (want, connect)
}

/// `--name`, `--name=value`, `-n`, `-nvalue` or `-n=value` to its Arg.
fn find_flag(cmd: &clap::Command, word: &str) -> (Option<Arg>, Option<String>) {
    if let Some(long) = word.strip_prefix("--") {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name)));
        return (arg.cloned(), inline);
    }
    let mut chars = word[1..].chars();
    let Some(short) = chars.next() else { return (None, None) };
    let rest: String = chars.collect();
    let arg = cmd.get_arguments().find(|a| a.get_short() == Some(short)).cloned();
    let inline = (!rest.is_empty()).then(|| rest.trim_start_matches('=').to_string());
    (arg, inline)
}

fn takes_value(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.takes_values())
}

fn help_of(arg: &Arg) -> String {
    arg.get_help().map(|h| h.to_string()).unwrap_or_default()
}

/// Candidates for the value of `arg`.
fn values_of(arg: &Arg, prefix: &str, partial: &str) -> Want {
    let (prefix, partial) = (prefix.to_string(), partial.to_string());
    match (arg.get_id().as_str(), arg.get_value_names().and_then(|v| v.first()).map(|v| v.as_str())) {
        (_, Some("POOL")) => return Want::Pools { prefix, partial },
        ("namespace", _) => return Want::Namespaces { prefix, partial },
        ("context", _) => return Want::KubeconfigEntries { what: Entry::Context, prefix, partial },
        ("cluster", _) => return Want::KubeconfigEntries { what: Entry::Cluster, prefix, partial },
        ("user", _) => return Want::KubeconfigEntries { what: Entry::User, prefix, partial },
        // A path: let the shell complete file names.
        ("kubeconfig", _) => return Want::Fixed(Vec::new(), DIRECTIVE_DEFAULT),
        _ => {}
    }
    let values = arg
        .get_possible_values()
        .into_iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| (format!("{prefix}{}", v.get_name()), v.get_help().map(|h| h.to_string()).unwrap_or_default()))
        .collect::<Vec<_>>();
    Want::Fixed(filter(values.into_iter(), &format!("{prefix}{partial}")), DIRECTIVE_NO_FILE_COMP)
}

/// Keep the connection flags typed before the word being completed.
fn note_connection(connect: &mut ConnectOptions, arg: &Arg, value: &str) {
    let v = Some(value.to_string());
    match arg.get_id().as_str() {
        "kubeconfig" => connect.kubeconfig = Some(PathBuf::from(value)),
        "context" => connect.context = v,
        "cluster" => connect.cluster = v,
        "user" => connect.user = v,
        "as_user" => connect.as_user = v,
        "as_group" => connect.as_group.push(value.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    fn analyse(words: &[String]) -> (Want, ConnectOptions) {
        super::analyse(Cli::command(), words)
    }

    fn words(s: &[&str]) -> Vec<String> {
        s.iter().map(|w| w.to_string()).collect()
    }

    fn values(w: &Want) -> Vec<&str> {
        match w {
            Want::Fixed(c, _) => c.iter().map(|(v, _)| v.as_str()).collect(),
            other => panic!("not fixed: {other:?}"),
        }
    }

    #[test]
    fn verbs_by_prefix() {
        assert_eq!(values(&analyse(&words(&["mig"])).0), ["migrate"]);
        let all = analyse(&words(&[""])).0;
        assert_eq!(values(&all), ["status", "migrate", "verify", "completion"]);
        assert_eq!(values(&analyse(&words(&["--context", "x", "st"])).0), ["status"], "flags before the verb");
    }

    #[test]
    fn flags_of_the_verb_and_the_global_ones() {
        let w = analyse(&words(&["migrate", "--to"])).0;
        assert_eq!(values(&w), ["--to", "--to-pool"]);
        let w = analyse(&words(&["status", "--"])).0;
        assert!(values(&w).contains(&"--no-headers") && values(&w).contains(&"--kubeconfig"), "{w:?}");
        assert!(!values(&w).contains(&"--from"), "another verb's flag");
    }

    #[test]
    fn pool_flags_want_pool_names_with_the_connection_typed_so_far() {
        let (w, c) = analyse(&words(&["--context", "prod", "migrate", "--from", ""]));
        assert_eq!(w, Want::Pools { prefix: String::new(), partial: String::new() });
        assert_eq!(c.context.as_deref(), Some("prod"));
        let (w, c) = analyse(&words(&["migrate", "--kubeconfig=/k", "--from", "x", "--to-pool=ne"]));
        assert_eq!(w, Want::Pools { prefix: "--to-pool=".into(), partial: "ne".into() });
        assert_eq!(c.kubeconfig, Some(PathBuf::from("/k")));
        assert_eq!(
            analyse(&words(&["verify", "--to", "n"])).0,
            Want::Pools { prefix: String::new(), partial: "n".into() }
        );
        assert!(matches!(analyse(&words(&["status", "--pool", ""])).0, Want::Pools { .. }));
        // migrate --to is a CIDR, not a pool.
        assert_eq!(values(&analyse(&words(&["migrate", "--to", ""])).0), Vec::<&str>::new());
    }

    #[test]
    fn enum_values_and_kubeconfig_entries() {
        assert_eq!(values(&analyse(&words(&["status", "-o", ""])).0), ["wide", "json", "yaml"]);
        assert_eq!(values(&analyse(&words(&["migrate", "--strategy", "r"])).0), ["rollout"]);
        assert_eq!(values(&analyse(&words(&["completion", "b"])).0), ["bash"]);
        assert!(matches!(
            analyse(&words(&["status", "--context", "k"])).0,
            Want::KubeconfigEntries { what: Entry::Context, .. }
        ));
        assert_eq!(analyse(&words(&["status", "--kubeconfig", ""])).0, Want::Fixed(Vec::new(), DIRECTIVE_DEFAULT));
    }

    #[test]
    fn the_namespace_flag_wants_namespaces() {
        let ns = |prefix: &str, partial: &str| Want::Namespaces { prefix: prefix.into(), partial: partial.into() };
        assert_eq!(analyse(&words(&["status", "-n", "kube-"])).0, ns("", "kube-"));
        assert_eq!(analyse(&words(&["verify", "--namespace=sh"])).0, ns("--namespace=", "sh"));
        assert_eq!(analyse(&words(&["-n", ""])).0, ns("", ""), "before the verb too (a global flag)");
        let (w, c) = analyse(&words(&["--context", "prod", "migrate", "--namespace", ""]));
        assert_eq!((w, c.context.as_deref()), (ns("", ""), Some("prod")));
    }

    #[test]
    fn cobra_protocol_lines() {
        let out = render(&[("migrate".into(), "Move every pod\nmore".into()), ("x".into(), String::new())], 4);
        assert_eq!(out, "migrate\tMove every pod\nx\n:4\n");
    }
}
