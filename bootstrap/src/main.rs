use std::process::ExitCode;

fn main() -> ExitCode {
    // Exactly one rustls crypto provider for the whole process; two in the graph make rustls panic
    // when a client picks the default. An Err means one was installed already, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    temporal_bootstrap::cli::main()
}
