//! The `arenalab` program: see the crate documentation of the `arenalab` library.
fn main() {
    std::process::exit(arenalab::cli::main());
}
