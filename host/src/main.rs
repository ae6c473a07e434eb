//! The `agent-vault` binary: parse the command line, run it, print the error chain once.

use std::process::ExitCode;

use clap::Parser;

// The proxy allocates and frees small buffers on every request, from several threads;
// mimalloc's thread-local free lists make that cheaper than glibc's arenas (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = agent_vault::cli::Cli::parse();
    match agent_vault::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
