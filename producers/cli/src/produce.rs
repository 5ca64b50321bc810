//! `zenvelope produce` and `zenvelope subscribe`: the producer SDK from the command line.
//!
//! Both read a client configuration (`--config`, as `zenvelope up` writes it) and take
//! the user's passphrase from the environment variable [`PASSPHRASE_ENV`] or a file, never
//! from the command line (it would land in shell history and `ps`).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use zenvelope_producer::{Client, ClientConfig, Error as SdkError, Passphrase, Request, User};
use zenvelope_runtime::Subscriber;
use zenvelope_schemas::names::{header, topic};

/// The environment variable holding the user's passphrase.
pub(crate) const PASSPHRASE_ENV: &str = "ZENVELOPE_PASSPHRASE";
/// The most input `produce` reads, in bytes (the envelope's default plaintext bound is
/// larger; this keeps a mistaken `produce < big.iso` from sealing a disk image).
const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// Who the request is for, and how to get their key.
#[derive(clap::Args, Debug)]
pub(crate) struct UserArgs {
    /// The user's identity (e.g. email). Only its pseudonym leaves this process.
    #[arg(long, value_name = "IDENTITY")]
    user: Option<String>,
    /// Read the passphrase from this file (first line) instead of $ZENVELOPE_PASSPHRASE.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

/// Arguments of `zenvelope produce`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProduceArgs {
    /// The client configuration (`zenvelope up` writes .zenvelope/client.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    user: UserArgs,
    /// What the model is asked to do with the text (sealed with it).
    #[arg(long, default_value = "Summarise this text in one sentence.")]
    instruction: String,
    /// Wait for the answer, open it and print it. A refusal by admission (quota,
    /// signature, purpose) is printed with its reason and exits with status 1.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Send the input as a document of this media type (bytes, e.g.
    /// `application/fhir+json`) instead of as UTF-8 text. The enclave analyses textual
    /// types; images and PDFs are dead-lettered (`unsupported_input`).
    #[arg(long, value_name = "TYPE")]
    media_type: Option<String>,
    /// The text to analyse: a file, or standard input when absent or `-`.
    input: Option<PathBuf>,
}

/// Arguments of `zenvelope subscribe`.
#[derive(clap::Args, Debug)]
pub(crate) struct SubscribeArgs {
    /// The client configuration (`zenvelope up` writes .zenvelope/client.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    user: UserArgs,
    /// Start from the first answer on the topic, not only new ones.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many answers (admission's refusals of this user's requests,
    /// printed as `refused ...` lines, count too).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop when no answer arrived for this many seconds (default: follow forever).
    #[arg(long, value_name = "SECONDS")]
    idle_timeout_secs: Option<u64>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn passphrase(args: &UserArgs) -> anyhow::Result<Passphrase> {
    let text = match &args.passphrase_file {
        Some(path) => {
            let text =
                zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the passphrase file {}", path.display())
                })?);
            text.lines().next().unwrap_or_default().to_owned()
        }
        None => std::env::var(PASSPHRASE_ENV).with_context(|| {
            format!("no passphrase: set {PASSPHRASE_ENV} or give --passphrase-file")
        })?,
    };
    if text.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(Passphrase::new(text))
}

async fn login(client: &Client, args: &UserArgs) -> anyhow::Result<User> {
    let identity = args.user.as_deref().context("--user is required")?;
    Ok(client.login(identity, passphrase(args)?).await?)
}

fn load(config: &Path) -> anyhow::Result<ClientConfig> {
    Ok(ClientConfig::load(config)?)
}

fn read_bytes(path: Option<&Path>) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    let limit = u64::try_from(MAX_INPUT_BYTES).unwrap_or(u64::MAX) + 1;
    match path {
        Some(p) if p != Path::new("-") => std::fs::File::open(p)
            .with_context(|| format!("cannot open {}", p.display()))?
            .take(limit)
            .read_to_end(&mut bytes)?,
        _ => std::io::stdin().take(limit).read_to_end(&mut bytes)?,
    };
    if bytes.len() > MAX_INPUT_BYTES {
        bail!("the input is larger than {MAX_INPUT_BYTES} bytes");
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("the input is empty: nothing to send");
    }
    Ok(bytes)
}

/// The request for the input: text, or a document with `--media-type`.
fn request(args: &ProduceArgs) -> anyhow::Result<Request> {
    let mut bytes = read_bytes(args.input.as_deref())?;
    let data = std::mem::take(&mut *bytes);
    Ok(match &args.media_type {
        Some(media_type) => Request::bytes(args.instruction.clone(), data, media_type.clone()),
        None => {
            let text = String::from_utf8(data).map_err(|e| {
                zeroize::Zeroize::zeroize(&mut e.into_bytes());
                anyhow::anyhow!("the input is not UTF-8 text (give --media-type to send bytes)")
            })?;
            Request::text(args.instruction.clone(), text)
        }
    })
}

pub(crate) fn produce(args: &ProduceArgs) -> anyhow::Result<()> {
    let request = request(args)?;
    let config = load(&args.config)?;
    runtime()?.block_on(async {
        let client = Client::from_client_config(&config)?;
        let user = login(&client, &args.user).await?;
        let fleet = client
            .wait_for_fleet_key(zenvelope_producer::DEFAULT_KEY_WAIT)
            .await?;
        eprintln!(
            "fleet key {} v{} verified from the key directory ({})",
            fleet.key_id, fleet.key_version, fleet.fingerprint
        );
        // Subscribe before producing, so the answer cannot slip past.
        let mut answers = if args.wait {
            Some(client.results(&user, false)?)
        } else {
            None
        };
        let sent = client.analyze(&user, request).await?;
        println!(
            "sent {} to {} partition {} offset {} (subject {})",
            sent.message_id,
            topic::REQUESTS,
            sent.partition,
            sent.offset,
            user.subject()
        );
        let Some(answers) = answers.as_mut() else {
            return Ok(());
        };
        let timeout = Duration::from_secs(args.timeout_secs);
        let outcome = tokio::time::timeout(timeout, answers.outcome_of(&sent.message_id))
            .await
            .with_context(|| format!("no answer within {} s", args.timeout_secs))?;
        match outcome {
            Ok(answer) => {
                print_answer(&answer);
                Ok(())
            }
            Err(SdkError::Refused(refusal)) => bail!("{refusal}"),
            Err(error) => Err(explain(error)),
        }
    })
}

pub(crate) fn subscribe(args: &SubscribeArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    runtime()?.block_on(async {
        if args.user.user.is_none() {
            return metadata_only(&config, args).await;
        }
        let client = Client::from_client_config(&config)?;
        let user = login(&client, &args.user).await?;
        let mut answers = client.results(&user, args.from_beginning)?;
        let mut shown = 0u64;
        let mut unopenable = 0u64;
        while args.count.is_none_or(|n| shown < n) {
            let next = match args.idle_timeout_secs {
                Some(s) => match tokio::time::timeout(Duration::from_secs(s), answers.next()).await
                {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => answers.next().await,
            };
            match next {
                Ok(answer) => {
                    print_answer(&answer);
                    shown += 1;
                }
                Err(SdkError::Refused(refusal)) => {
                    println!(
                        "refused {} ({}): {}",
                        refusal.message_id.as_deref().unwrap_or("-"),
                        refusal.reason_code,
                        refusal.detail
                    );
                    shown += 1;
                }
                Err(error @ SdkError::Unopenable { .. }) => {
                    unopenable += 1;
                    eprintln!("error: {}", explain(error));
                }
                Err(error) => return Err(error.into()),
            }
        }
        if unopenable > 0 {
            bail!(
                "{unopenable} answer(s) for this user could not be opened (a wrong passphrase opens nothing)"
            );
        }
        Ok(())
    })
}

/// Without a user key: what any consumer of the result topic sees, nothing decrypted.
async fn metadata_only(config: &ClientConfig, args: &SubscribeArgs) -> anyhow::Result<()> {
    eprintln!("no --user: showing public metadata only, nothing is decrypted");
    let group = format!(
        "zenvelope-cli-metadata-{}",
        zenvelope_envelope::MessageId::new_v7()
    );
    let subscriber = Subscriber::new(
        &config.kafka,
        &group,
        &[topic::RESULTS],
        args.from_beginning,
    )?;
    let mut shown = 0u64;
    while args.count.is_none_or(|n| shown < n) {
        let record = match args.idle_timeout_secs {
            Some(s) => {
                match tokio::time::timeout(Duration::from_secs(s), subscriber.recv()).await {
                    Ok(r) => r?,
                    Err(_) => break,
                }
            }
            None => subscriber.recv().await?,
        };
        let h = |name| {
            record
                .header(name)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_else(|| "-".to_owned())
        };
        println!(
            "offset {} partition {}: kind {} tenant {} subject {} answers {} ({} sealed bytes)",
            record.offset,
            record.partition,
            h(header::KIND),
            h(header::TENANT),
            h(header::SUBJECT),
            h(header::CORRELATION_ID),
            record.payload.len()
        );
        shown += 1;
    }
    Ok(())
}

fn print_answer(answer: &zenvelope_producer::Answer) {
    let source = answer
        .provider
        .as_ref()
        .map(|(p, m)| format!("{p}/{m}"))
        .unwrap_or_else(|| "-".to_owned());
    println!(
        "answer to {} ({}, from {source}): {}",
        answer.correlation_id,
        answer.kind.symbol(),
        answer.text
    );
}

/// Turns an unopenable answer into advice: the usual cause is a wrong passphrase.
fn explain(error: SdkError) -> anyhow::Error {
    match error {
        SdkError::Unopenable { topic, offset, .. } => anyhow::anyhow!(
            "the answer at {topic} offset {offset} is addressed to this user but cannot be opened: wrong passphrase, or the record was tampered with"
        ),
        other => other.into(),
    }
}
