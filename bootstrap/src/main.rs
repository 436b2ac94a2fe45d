use std::process::ExitCode;

fn main() -> ExitCode {
    // Exactly one rustls crypto provider (ring) for the whole process, before anything else.
    temporal_bootstrap::ensure_crypto_provider();
    temporal_bootstrap::cli::main()
}
