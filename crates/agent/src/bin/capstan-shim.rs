//! Standalone shim binary for tests; the `capstan` binary offers the same as `capstan shim`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(capstan_agent::runtime::process::shim_main(args));
}
