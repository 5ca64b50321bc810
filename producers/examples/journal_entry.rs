//! A therapy-journal backend sends one entry for analysis and prints the answer.
//!
//! Against the local stack (`zenvelope up` in another terminal):
//!
//! ```sh
//! ZENVELOPE_PASSPHRASE='a passphrase' cargo run -p zenvelope-producer --example journal_entry -- \
//!     .zenvelope/client.toml alice@example.com "Slept badly again; worried about Monday."
//! ```
//!
//! In production the passphrase never reaches the backend: the user's device derives the
//! key. This example plays both parts to stay short.

use std::time::Duration;

use zenvelope_producer::{Client, Passphrase, Request};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(user), Some(entry)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: journal_entry CONFIG USER ENTRY (passphrase in $ZENVELOPE_PASSPHRASE)");
        std::process::exit(2);
    };
    let passphrase = std::env::var("ZENVELOPE_PASSPHRASE")?;

    // Keys from the configuration file; fleet keys from the attested key directory.
    let client = Client::from_config(std::path::Path::new(&config))?;
    let user = client.login(&user, Passphrase::new(passphrase)).await?;

    // Subscribe first, so the answer cannot slip past; then seal and send.
    let mut answers = client.results(&user, false)?;
    let sent = client
        .analyze(&user, Request::text("Summarise this journal entry.", entry))
        .await?;
    println!("sent {}", sent.message_id);

    // The answer, or admission's refusal (quota, signature, purpose) with its reason.
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        answers.outcome_of(&sent.message_id),
    )
    .await??;
    println!("{}", answer.text);
    Ok(())
}
