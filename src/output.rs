//! The one place that decides where output goes and how it looks.
//!
//! Data (tables, JSON, YAML) goes to stdout; progress, prompts, warnings
//! and notes go to stderr, so `kubectl ippool status -o json | jq` works
//! while a person still sees what is happening. Progress bars and prompts
//! appear only on a terminal.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use prettytable::format::{FormatBuilder, LinePosition, LineSeparator};
use prettytable::{Cell, Row, Table};
use serde::Serialize;

use crate::cluster::progress::{Progress, ProgressEvent};
use crate::error::{Error, Result};

/// Output formats shared by the verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// kubectl-style table
    #[default]
    #[value(hide = true)]
    Table,
    /// table with more columns
    Wide,
    Json,
    Yaml,
}

pub struct Printer {
    pub format: OutputFormat,
    /// Tables get their header line (off with --no-headers).
    pub headers: bool,
    stderr_is_tty: bool,
    stdin_is_tty: bool,
}

impl Printer {
    pub fn new(format: OutputFormat) -> Printer {
        Printer {
            format,
            headers: true,
            stderr_is_tty: std::io::stderr().is_terminal(),
            stdin_is_tty: std::io::stdin().is_terminal(),
        }
    }

    /// kubectl's `--no-headers`: tables without their header line.
    pub fn no_headers(mut self, no_headers: bool) -> Printer {
        self.headers = !no_headers;
        self
    }

    pub fn is_machine_readable(&self) -> bool {
        matches!(self.format, OutputFormat::Json | OutputFormat::Yaml)
    }

    pub fn wide(&self) -> bool {
        self.format == OutputFormat::Wide
    }

    /// Serialise `value` to stdout as JSON or YAML.
    pub fn data<T: Serialize>(&self, value: &T) -> Result<()> {
        let text = match self.format {
            OutputFormat::Yaml => {
                serde_yaml_ng::to_string(value).map_err(|e| Error::Other(format!("cannot render YAML: {e}")))?
            }
            _ => {
                serde_json::to_string_pretty(value).map_err(|e| Error::Other(format!("cannot render JSON: {e}")))?
                    + "\n"
            }
        };
        self.stdout(&text)
    }

    /// Write text to stdout as is. A closed pipe (`| head`) is not an
    /// error: the reader has all it wanted. Any other write error is.
    pub fn stdout(&self, text: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(Error::Other(format!("cannot write to standard output: {e}"))),
        }
    }

    /// Print a kubectl-style table (no borders, upper-case headers, columns
    /// three spaces apart) to stdout.
    pub fn table(&self, headers: &[&str], rows: Vec<Vec<String>>) -> Result<()> {
        self.stdout(&render_rows(headers, rows, self.headers))
    }

    /// A line for a person, on stderr.
    pub fn note(&self, msg: impl AsRef<str>) {
        eprintln!("{}", msg.as_ref());
    }

    /// A warning, in kubectl's `Warning: ...` form, on stderr.
    pub fn warn(&self, msg: impl AsRef<str>) {
        eprintln!("Warning: {}", msg.as_ref());
    }

    /// A progress bar on stderr; hidden when stderr is not a terminal.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        if !self.stderr_is_tty {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        pb.set_style(
            ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        pb
    }

    /// Ask before a change. `--yes` answers for the user; with no terminal
    /// and no `--yes` we refuse rather than guess.
    pub fn confirm(&self, question: &str, yes: bool) -> Result<()> {
        if yes {
            return Ok(());
        }
        if !(self.stdin_is_tty && self.stderr_is_tty) {
            return Err(Error::NotConfirmed("not running on a terminal, so cannot ask for confirmation; re-run with --yes to proceed (nothing was changed)".into()));
        }
        let ok = dialoguer::Confirm::new()
            .with_prompt(question)
            .default(false)
            .interact()
            .map_err(|e| Error::Other(format!("prompt failed: {e}")))?;
        if ok {
            Ok(())
        } else {
            Err(Error::NotConfirmed("aborted; nothing was changed".into()))
        }
    }
}

impl Progress for Printer {
    fn report(&self, event: ProgressEvent<'_>) {
        match event {
            // kubectl drain's wording, so operators recognise it.
            ProgressEvent::EvictionRefused { namespace, name, retry_in, message } => self.note(format!(
                "error when evicting pods/\"{name}\" -n \"{namespace}\" (will retry after {}s): {message}",
                retry_in.as_secs()
            )),
            ProgressEvent::WaitingForBudget { pdb, need, allowed } => self.note(format!(
                "waiting for PodDisruptionBudget {pdb} to allow {need} more pod(s) down (it allows {allowed} now)"
            )),
        }
    }
}

/// Render rows the way kubectl does (`NAME   CIDR   ...`).
pub fn render_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    render_rows(headers, rows, true)
}

/// Rows aligned as with their headers, printing the header line or not
/// (`--no-headers` keeps the columns where they would be).
pub fn render_rows(headers: &[&str], rows: Vec<Vec<String>>, with_headers: bool) -> String {
    let mut t = Table::new();
    t.set_format(
        FormatBuilder::new()
            .column_separator(' ')
            .padding(0, 2)
            .separator(LinePosition::Title, LineSeparator::new(' ', ' ', ' ', ' '))
            .build(),
    );
    t.set_titles(Row::new(headers.iter().map(|h| Cell::new(&h.to_uppercase())).collect()));
    for r in rows {
        t.add_row(Row::new(r.iter().map(|c| Cell::new(c)).collect()));
    }
    let mut buf = Vec::new();
    let _ = t.print(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        // prettytable draws an empty separator line under the titles; drop it.
        if line.trim().is_empty() || (i == 0 && !with_headers) {
            continue;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A count of addresses as a table shows it: exact up to 2^32 (any IPv4
/// figure), then `2^k` for a power of two (an IPv6 pool: `2^64`), else
/// three significant digits (`1.8e19`). JSON keeps the exact figure.
fn readable_count(n: u128) -> String {
    if n == u128::MAX {
        return "2^128".into();
    }
    if n <= 1u128 << 32 {
        return n.to_string();
    }
    if n.is_power_of_two() {
        return format!("2^{}", n.trailing_zeros());
    }
    let exp = n.ilog10();
    let mantissa = n as f64 / 10f64.powi(exp as i32);
    format!("{:.1}e{exp}", mantissa)
}

/// Whether to colour what goes to a stream: only on a terminal, and never
/// when `NO_COLOR` is set to anything (https://no-color.org).
pub fn colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Colour for stderr (logs, progress) in this process.
pub fn stderr_colour() -> bool {
    colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref())
}

/// `12/256 (4%)`.
pub fn used_of(used: u64, capacity: u128) -> String {
    let pct = if capacity == 0 { 0.0 } else { used as f64 * 100.0 / capacity as f64 };
    let cap = readable_count(capacity);
    if pct > 0.0 && pct < 1.0 {
        format!("{used}/{cap} (<1%)")
    } else {
        format!("{used}/{cap} ({pct:.0}%)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_readable_in_tables() {
        assert_eq!(readable_count(65536), "65536");
        assert_eq!(readable_count(1 << 32), "4294967296");
        assert_eq!(readable_count(1 << 64), "2^64");
        assert_eq!(readable_count(u128::MAX), "2^128");
        assert_eq!(readable_count((1 << 64) - 5), "1.8e19");
        assert_eq!(readable_count(5_000_000_000), "5.0e9");
    }

    #[test]
    fn tables_look_like_kubectl() {
        let t = render_table(
            &["name", "cidr"],
            vec![vec!["default-ipv4-ippool".into(), "192.168.0.0/16".into()], vec!["new".into(), "10.0.0.0/16".into()]],
        );
        insta::assert_snapshot!(t, @r"
        NAME                  CIDR
        default-ipv4-ippool   192.168.0.0/16
        new                   10.0.0.0/16
        ");
    }

    #[test]
    fn no_headers_keeps_rows_and_alignment() {
        let rows = || vec![vec!["a-long-pool".to_string(), "1.0.0.0/8".into()], vec!["b".into(), "2.0.0.0/8".into()]];
        let t = render_rows(&["name", "cidr"], rows(), false);
        assert_eq!(t, "a-long-pool   1.0.0.0/8\nb             2.0.0.0/8\n");
        assert_eq!(render_rows(&["name", "cidr"], rows(), true).lines().count(), 3);
    }

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None));
        assert!(!colour(true, Some("1".as_ref())));
        assert!(!colour(true, Some("0".as_ref())), "any value counts, as no-color.org says");
        assert!(colour(true, Some("".as_ref())), "an empty NO_COLOR does not count");
    }

    #[test]
    fn usage_percentages() {
        assert_eq!(used_of(12, 256), "12/256 (5%)");
        assert_eq!(used_of(1, 65536), "1/65536 (<1%)");
        assert_eq!(used_of(0, 0), "0/0 (0%)");
        assert_eq!(used_of(5, 1 << 64), "5/2^64 (<1%)");
    }
}
