//! The `coffer` command. All behaviour lives in the library; this binary parses arguments,
//! asks for passwords, shows progress and prints results (see `cli/`).

mod cli;

fn main() {
    std::process::exit(cli::run());
}
