//! `zenvelope up`, then `produce` and `subscribe` against it from other processes, as a
//! user in a second terminal would: outputs and exit codes, the errors (wrong
//! passphrase, no passphrase, an unverifiable key directory), and no plaintext anywhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CANARY: &str = "CANARY-5d2e journal: panic attack on the bus";
const USER: &str = "alice@example.com";
const PASSPHRASE: &str = "correct horse battery staple";

/// `zenvelope up` in the background, stopped (SIGINT) when dropped.
struct Up {
    child: Child,
    dir: tempfile::TempDir,
}

impl Up {
    fn start() -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(dir.path().join("up.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_zenvelope"))
            .args([
                "up",
                "--rsa-bits",
                "2048",
                "--provider",
                "offline",
                "--usage-listen",
                "127.0.0.1:0",
                "--state-dir",
            ])
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn zenvelope up");
        let up = Up { child, dir };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !up.config().is_file() {
            assert!(
                Instant::now() < deadline,
                "up did not become ready: {}",
                up.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        up
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("state").join("client.toml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// SIGINT, then the exit status and the whole log.
    fn stop(mut self) -> (bool, String) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "up did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(100));
        };
        (status.success(), self.log())
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn zenvelope(args: &[&str], config: &Path, passphrase: Option<&str>, stdin: &[u8]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zenvelope"));
    command
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("ZENVELOPE_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(p) = passphrase {
        command.env("ZENVELOPE_PASSPHRASE", p);
    }
    let mut child = command.spawn().expect("spawn zenvelope");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("stdin");
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The message id on `produce`'s `sent ...` line.
fn sent_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .and_then(|l| l.split_whitespace().next())
        .expect("a sent line")
        .to_owned()
}

#[test]
fn up_then_produce_and_subscribe_from_other_processes() {
    let up = Up::start();
    let config = up.config();

    // Produce and wait for the answer.
    let out = zenvelope(
        &["produce", "--user", USER, "--wait"],
        &config,
        Some(PASSPHRASE),
        CANARY.as_bytes(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("fleet key fleet v1 verified from the key directory"),
        "{stderr}"
    );
    let sent = sent_id(&stdout);
    assert!(
        stdout.contains(&format!("answer to {sent} (RESULT")),
        "{stdout}"
    );
    assert!(stdout.contains("NOT a model"), "{stdout}");

    // A document as bytes with its media type (a FHIR resource) is answered too.
    let fhir = format!(r#"{{"resourceType":"Observation","note":"{CANARY}"}}"#);
    let out = zenvelope(
        &[
            "produce",
            "--user",
            USER,
            "--wait",
            "--media-type",
            "application/fhir+json",
        ],
        &config,
        Some(PASSPHRASE),
        fhir.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(RESULT, from offline-analyser"),
        "{}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("CANARY"));

    // The same user, later, reads the answer back.
    let out = zenvelope(
        &[
            "subscribe",
            "--user",
            USER,
            "--from-beginning",
            "--count",
            "2",
        ],
        &config,
        Some(PASSPHRASE),
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("answer to {sent}")), "{stdout}");
    assert_eq!(stdout.matches("answer to ").count(), 2, "{stdout}");

    // A wrong passphrase opens nothing, and says so.
    let out = zenvelope(
        &[
            "subscribe",
            "--user",
            USER,
            "--from-beginning",
            "--idle-timeout-secs",
            "5",
        ],
        &config,
        Some("not the passphrase"),
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(!text(&out.stdout).contains("answer to"));

    // Without a user: public metadata only (both answers; partitions interleave in any
    // order).
    let out = zenvelope(
        &["subscribe", "--from-beginning", "--count", "2"],
        &config,
        None,
        b"",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("answers {sent}")) && stdout.contains("sealed bytes"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("nothing is decrypted"));

    // No passphrase at all: a clear error before anything is sent.
    let out = zenvelope(&["produce", "--user", USER], &config, None, b"text");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no passphrase: set ZENVELOPE_PASSPHRASE"),
        "{}",
        text(&out.stderr)
    );

    // A producer that pins another enclave image refuses to seal.
    let pinned_elsewhere = up.dir.path().join("state").join("other-image.toml");
    let original = std::fs::read_to_string(&config).expect("config");
    let pcr0 = original
        .lines()
        .find_map(|l| l.strip_prefix("pcrs = { 0 = \""))
        .and_then(|l| l.split('"').next())
        .expect("pcr0 line")
        .to_owned();
    std::fs::write(&pinned_elsewhere, original.replace(&pcr0, &"00".repeat(48))).expect("write");
    let out = zenvelope(
        &["produce", "--user", USER],
        &pinned_elsewhere,
        Some(PASSPHRASE),
        CANARY.as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("No trusted fleet key")
            && stderr.contains("FLEET_ENCRYPTION/fleet/1")
            && stderr.contains("measurements"),
        "{stderr}"
    );
    assert!(!text(&out.stdout).contains("sent "));

    // An auditor replays the topics with the public keys `up` wrote: two requests, their
    // answers, every signature good.
    let state = up.dir.path().join("state");
    let bootstrap = original
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap_servers = \""))
        .and_then(|l| l.split('"').next())
        .expect("bootstrap line")
        .to_owned();
    // The auditor's replay, with the public keys `up` wrote.
    let replay = || {
        Command::new(env!("CARGO_BIN_EXE_zenvelope"))
            .args(["replay", "--json", "--quiet", "--bootstrap", &bootstrap])
            .arg("--trust-producer-key")
            .arg(format!(
                "journal-backend:1={}",
                state.join("producer-public.der").display()
            ))
            .arg("--result-key")
            .arg(format!(
                "fleet-results:1={}",
                state.join("results-public.der").display()
            ))
            .output()
            .expect("replay")
    };
    let replay_now = replay();
    let report = text(&replay_now.stdout);
    assert_eq!(
        replay_now.status.code(),
        Some(0),
        "{report}\n{}",
        text(&replay_now.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&report).expect("JSON report");
    assert_eq!(json["clean"], true, "{report}");
    for t in ["zenvelope.requests", "zenvelope.results"] {
        assert_eq!(json["topics"][t]["verified"], 2, "{t}: {report}");
    }
    assert!(!report.contains("CANARY"));

    // The key directory as the SDK sees it.
    let keys = |config: &Path| {
        Command::new(env!("CARGO_BIN_EXE_zenvelope"))
            .args(["keys", "show", "--wait-secs", "2", "--config"])
            .arg(config)
            .output()
            .expect("keys show")
    };
    let out = keys(&config);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("FLEET_ENCRYPTION/fleet/1") && l.ends_with("verified")),
        "{shown}"
    );
    assert!(shown.contains("requests are wrapped to fleet key fleet v1"));
    let out = keys(&pinned_elsewhere);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("REFUSED: the enclave measurements do not match"),
        "{}",
        text(&out.stdout)
    );

    // A backend signing with a key id the tenant never registered: its SDK cannot know,
    // admission dead-letters it before any enclave sees it and tells the user's SDK, and
    // the auditor's replay shows both.
    let other = state.join("other");
    let out = Command::new(env!("CARGO_BIN_EXE_zenvelope"))
        .args([
            "keys",
            "generate",
            "--key-id",
            "unknown-backend",
            "--algorithm",
            "ecdsa",
            "--out",
        ])
        .arg(&other)
        .output()
        .expect("keys generate");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("trusted_signers entry"));
    let untrusted = state.join("untrusted.toml");
    std::fs::write(
        &untrusted,
        original
            .replace(
                "signing_key_file = \"danger-dev-producer.pk8\"",
                "signing_key_file = \"other/danger-dev-unknown-backend-v1.pk8\"",
            )
            .replace(
                "signing_key_id = \"journal-backend\"",
                "signing_key_id = \"unknown-backend\"",
            ),
    )
    .expect("write");
    let out = zenvelope(
        &["produce", "--user", USER, "--wait"],
        &untrusted,
        Some(PASSPHRASE),
        CANARY.as_bytes(),
    );
    let (refused_out, refused_err) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{refused_out}\n{refused_err}");
    let refused_id = sent_id(&refused_out);
    assert!(
        refused_err.contains(&format!(
            "Request {refused_id} was refused by admission (untrusted_signer)"
        )),
        "{refused_err}"
    );
    assert!(!refused_out.contains("answer to"), "{refused_out}");
    assert!(!format!("{refused_out}{refused_err}").contains("CANARY"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let json = loop {
        let replay = replay();
        let json: serde_json::Value = serde_json::from_slice(&replay.stdout).expect("JSON report");
        if json["dead_letters"].get("untrusted_signer").is_some() {
            assert_eq!(replay.status.code(), Some(1), "findings");
            break json;
        }
        assert!(Instant::now() < deadline, "no dead letter: {json}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        json["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|p| p["class"] == "unknown_signer" && p["signer"]["key_id"] == "unknown-backend"),
        "{json}"
    );
    assert!(!json.to_string().contains("CANARY"));

    // Usage, as a dashboard reads it: the two admitted requests and their two answers;
    // the refused one is not counted against the quota.
    let usage = || {
        let out = Command::new(env!("CARGO_BIN_EXE_zenvelope"))
            .args([
                "usage",
                "--json",
                "--tenant",
                "demo-clinic",
                "--bootstrap",
                &bootstrap,
            ])
            .output()
            .expect("usage");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        rows
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = usage();
        let row = &rows[0];
        if row["results"] == 2 {
            assert_eq!(row["requests"], 2, "{rows}");
            assert_eq!(row["quota_rejected"], 0, "{rows}");
            assert_eq!(row["errors"], 0, "{rows}");
            assert!(
                row["request_bytes"].as_i64().is_some_and(|b| b > 0),
                "{rows}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "usage not metered: {rows}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let (stopped, log) = up.stop();
    assert!(stopped, "{log}");
    assert!(log.contains("2 requests processed by the host"), "{log}");
    assert!(
        log.contains("admission checked 3 requests and refused 1"),
        "{log}"
    );
    assert!(!log.contains("CANARY"), "plaintext in the stack's log");
    // Only the offline analyser's counts came back; the text itself never printed.
    for output in [&stdout, &stderr] {
        assert!(!output.contains("CANARY"));
    }
}
