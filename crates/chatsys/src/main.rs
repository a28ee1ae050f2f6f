//! `chatsys`: the one binary. `serve` (the default) runs the HTTP API; in embedded mode it
//! also runs the writer in-process.

mod allocator;
mod config;
mod distributed;
mod wiring;

use std::io::IsTerminal as _;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

#[derive(Parser)]
#[command(name = "chatsys", version, about = "A chat-system backend: numbered chats and messages, searchable")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand, Debug, PartialEq, Eq)]
enum Command {
    /// Run the HTTP API (the default); in embedded mode also the writer and the reconcile job
    Serve,
    /// Distributed mode: consume the create queue, write batches, run the reconcile job
    Worker,
    /// Recompute chats_count and messages_count from the rows once, then exit
    Reconcile,
    /// Rebuild the search index from the store (embedded mode: stop the server first)
    Reindex,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.config.log_format);
    raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => wiring::serve(cli.config).await,
            Command::Worker => wiring::worker(cli.config).await,
            Command::Reconcile => wiring::reconcile_once(cli.config).await,
            Command::Reindex => wiring::reindex(cli.config).await,
        }
    });
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "chatsys stopped");
    }
    result
}

/// Every open connection (a live-event stream stays open) is a file: take as many as the
/// hard limit allows, and say how many that is.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(open_files = hard, was = soft, "raised the open-files limit to the hard limit"),
            Err(e) => tracing::warn!(error = %e, open_files = soft, "cannot raise the open-files limit"),
        },
        Ok((soft, _)) => tracing::info!(open_files = soft, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_subcommand_means_serve_with_the_documented_defaults() {
        let cli = Cli::try_parse_from(["chatsys"]).unwrap();
        assert_eq!(cli.command, None);
        assert_eq!(cli.config.listen, "127.0.0.1:8080");
        assert_eq!(cli.config.data_dir, std::path::PathBuf::from("./data"));
        assert_eq!(cli.config.mode(), Ok(config::Mode::Embedded));
    }

    #[test]
    fn a_partial_distributed_configuration_names_what_is_missing() {
        let cli = Cli::try_parse_from(["chatsys", "serve", "--database-url", "mysql://x"]).unwrap();
        let err = cli.config.mode().unwrap_err();
        assert!(err.contains("CHATSYS_REDIS_URL") && err.contains("CHATSYS_AMQP_URL"), "{err}");
        assert!(!err.contains("missing: CHATSYS_DATABASE_URL"), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cli =
            Cli::try_parse_from(["chatsys", "--admin-token", "s3cret", "--database-url", "mysql://u:pw@h/db"]).unwrap();
        let shown = format!("{:?}", cli.config);
        assert!(!shown.contains("s3cret") && !shown.contains("pw@h"), "{shown}");
    }
}
