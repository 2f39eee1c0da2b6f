//! `kubectl-ippool`: a kubectl plugin that moves pods between Calico IP pools.
//!
//! main only parses the command line, sets up logging, runs the verb and
//! turns its result into an exit code: 0 ok, 1 drift found (verify), 2 error.

mod cli;
mod cluster;
mod commands;
mod core;
mod error;
mod heap;
mod migration;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    // cobra's completion protocol (kubectl_complete-ippool): the words are
    // a partial command line, not ours to parse.
    let result = if std::env::args_os().nth(1).is_some_and(|a| a == "__complete") {
        let words: Vec<String> = std::env::args_os().skip(2).map(|a| a.to_string_lossy().into_owned()).collect();
        runtime.block_on(commands::completion::complete(Cli::command(), &words))
    } else {
        let cli = Cli::parse();
        init_logging(cli.verbosity);
        runtime.block_on(async {
            match &cli.command {
                Command::Status(args) => commands::status::run(&cli.kube, args).await,
                Command::Migrate(args) => commands::migrate::run(&cli.kube, args).await,
                Command::Verify(args) => commands::verify::run(&cli.kube, args).await,
                Command::Completion(args) => commands::completion::run(args, Cli::command()),
            }
        })
    };
    // Drop the runtime without waiting on lingering watch tasks.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("{}", error::describe(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// `-v=N` maps to tracing levels the way kubectl's klog levels roughly do;
/// RUST_LOG overrides it.
fn init_logging(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1..=3 => "info",
        4..=5 => "debug",
        _ => "trace",
    };
    // kube-client logs every failed request at ERROR; we report errors
    // ourselves, so its logs only show from -v=4 on.
    let kube_level = match verbosity {
        0..=3 => "off",
        4..=5 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("kubectl_ippool={level},kube={kube_level}")));
    let ansi = output::stderr_colour();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}
