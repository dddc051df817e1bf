//! `tandem-config`: the `config` subcommands of `tandem` as a standalone program.

fn main() -> std::process::ExitCode {
    tandem_config::cli::run_from(std::env::args_os())
}
