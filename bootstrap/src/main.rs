use std::process::ExitCode;

fn main() -> ExitCode {
    // Exactly one rustls crypto provider (ring) for the whole process, before anything else.
    temporal_bootstrap::ensure_crypto_provider();
    // A closed stdout (`plan | head -1`) ends the CLI quietly, with the status a shell reports for
    // SIGPIPE. Not by restoring SIGPIPE's default disposition: when a server closes a TLS
    // connection (a TLS 1.3 frontend refusing a client certificate), a vectored socket write
    // (writev has no MSG_NOSIGNAL) raises SIGPIPE too, and that killed the process without a word.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    temporal_bootstrap::cli::main()
}
