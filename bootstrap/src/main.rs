use std::process::ExitCode;

fn main() -> ExitCode {
    // Exactly one rustls crypto provider (ring) for the whole process, before anything else.
    temporal_bootstrap::ensure_crypto_provider();
    // Rust ignores SIGPIPE, so `plan | head -1` would make println! panic; a CLI should just stop.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    temporal_bootstrap::cli::main()
}
