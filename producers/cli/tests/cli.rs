//! The CLI driven as a user would: arguments in, output and exit codes checked.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn zenvelope(args: &[&str], stdin: Option<&[u8]>) -> Output {
    // A developer's own API keys must not turn the demo into a paid model call.
    let mut child = Command::new(env!("CARGO_BIN_EXE_zenvelope"))
        .args(args)
        .env_remove("ZENVELOPE_OPENAI_API_KEY")
        .env_remove("ZENVELOPE_ANTHROPIC_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn zenvelope");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_runs_every_stage_and_never_prints_the_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let audit_dir = dir.path().join("audit");
    let audit_dir_arg = audit_dir.to_str().expect("utf-8 path");
    let out = zenvelope(
        &[
            "demo",
            "--entries",
            "2",
            "--iterations",
            "100000",
            "--rsa-bits",
            "2048",
            "--audit-dir",
            audit_dir_arg,
        ],
        None,
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        stdout
            .matches("user side  opened the answer with their passphrase")
            .count(),
        2,
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches("enclave    verified signature (journal-backend v1)")
            .count(),
        2
    );
    assert!(stdout.contains("NOT a model"));
    assert!(stdout.contains("\"kind\":\"REQUEST\""));
    // The fleet key came from the attested key directory.
    assert!(
        stdout.contains("published 2 attested public keys on zenvelope.keys"),
        "{stdout}"
    );
    assert!(
        stdout.contains("key directory: fleet key fleet v1 verified"),
        "{stdout}"
    );
    // Through the broker: the record's key is the pseudonym, the host processed both, and
    // two audit events per entry (opened, disclosure receipt) came back from the topic.
    assert_eq!(
        stdout.matches("plaintext in the record: no").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("key \"sp1_"), "{stdout}");
    assert!(
        stdout.contains("stopped: 2 requests processed, 0 dead-lettered"),
        "{stdout}"
    );
    // Admission let both through, refused the unregistered backend's request, the SDK
    // showed the refusal, and the usage counters say so.
    assert_eq!(
        stdout
            .matches("admission  signature journal-backend v1 registered for demo-clinic")
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stdout.contains("admission  refused it (untrusted_signer)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the SDK told the user (notice on zenvelope.rejections)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(": 2 requests admitted (quota 100), 2 answered,"),
        "{stdout}"
    );
    assert!(
        stdout.contains("admission  stopped: 3 requests checked, 1 refused"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("disclosure receipt:").count(), 2, "{stdout}");
    assert_eq!(
        stdout.matches("signed by fleet-results:1").count(),
        2,
        "{stdout}"
    );
    // The journal entries themselves never reach the terminal, the wire dump or the broker view.
    for fragment in [
        "Slept four hours",
        "sister about Mum",
        "Chest felt tight",
        "alice@example.com\"",
    ] {
        assert!(!stdout.contains(fragment), "plaintext {fragment:?} printed");
    }
    audit_log_of_the_demo(&stdout, &audit_dir);
}

/// The demo's audit log: complete, verifiable, free of the entries, and a deleted row
/// is named by `zenvelope audit verify`.
fn audit_log_of_the_demo(stdout: &str, audit_dir: &std::path::Path) {
    let store = audit_dir.join("audit.db");
    let vkey = audit_dir.join("audit.vkey");
    let (store_arg, vkey_arg) = (
        store.to_str().expect("utf-8"),
        vkey.to_str().expect("utf-8"),
    );
    assert!(stdout.contains("audit log  4 events in"), "{stdout}");
    assert!(stdout.contains("INTACT"), "{stdout}");
    let verify = || {
        zenvelope(
            &[
                "audit",
                "verify",
                "--store",
                store_arg,
                "--vkey-file",
                vkey_arg,
            ],
            None,
        )
    };
    let out = verify();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("result              INTACT"));
    let out = zenvelope(&["audit", "disclosures", "--store", store_arg], None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout)
            .matches("purpose INDIVIDUAL_REQUEST")
            .count(),
        2,
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stderr).contains("Receipt signatures not checked"));
    // Every receipt is signed by the run's result-signing key, and only by it.
    let results_key = audit_dir.join("results-public.der");
    let disclosures = |key: &std::path::Path| {
        zenvelope(
            &[
                "audit",
                "disclosures",
                "--store",
                store_arg,
                "--result-key",
                &format!("fleet-results:1={}", key.display()),
            ],
            None,
        )
    };
    let out = disclosures(&results_key);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches("receipt signed").count(),
        2,
        "{}",
        text(&out.stdout)
    );
    let stranger = audit_dir.join("stranger.der");
    std::fs::write(
        &stranger,
        zenvelope_envelope::SigningKey::generate_ecdsa_p256("fleet-results", 1)
            .expect("key")
            .spki_der(),
    )
    .expect("write");
    let out = disclosures(&stranger);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).matches("receipt BAD SIGNATURE").count(),
        2,
        "{}",
        text(&out.stdout)
    );
    let bytes = std::fs::read(&store).expect("read the store");
    let haystack = String::from_utf8_lossy(&bytes);
    for fragment in ["Slept four hours", "sister about Mum", "alice@example.com"] {
        assert!(
            !haystack.contains(fragment),
            "plaintext {fragment:?} in the audit store"
        );
    }

    // Delete the second event, as someone with the file could.
    let conn = rusqlite::Connection::open(&store).expect("open");
    conn.execute_batch("DROP TRIGGER events_append_only_delete; DELETE FROM events WHERE idx = 1;")
        .expect("tamper");
    drop(conn);
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("result              ALTERED"), "{report}");
    assert!(report.contains("first bad row       1"), "{report}");
    // Without a store: a clear error and exit status 2.
    let out = zenvelope(
        &[
            "audit",
            "verify",
            "--store",
            "/nonexistent/audit.db",
            "--vkey-file",
            vkey_arg,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("there is no audit store at /nonexistent/audit.db"));
}

#[test]
fn demo_rejects_out_of_range_arguments() {
    let out = zenvelope(
        &["demo", "--iterations", "1000", "--rsa-bits", "2048"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("PBKDF2 iterations must be between 100,000 and 10,000,000"),
        "{}",
        text(&out.stderr)
    );
    let out = zenvelope(&["demo", "--rsa-bits", "1024"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("2048, 3072 or 4096"),
        "{}",
        text(&out.stderr)
    );
    let out = zenvelope(&["demo", "--entries", "9"], None);
    assert!(!out.status.success());
}

/// A broker that is not there: a clear error naming the address, exit status 1.
#[test]
fn demo_with_an_unreachable_broker_fails_clearly() {
    let out = zenvelope(
        &[
            "demo",
            "--entries",
            "1",
            "--iterations",
            "100000",
            "--rsa-bits",
            "2048",
            "--bootstrap",
            "127.0.0.1:1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no Kafka broker answered at 127.0.0.1:1 within 10000 ms"),
        "{stderr}"
    );
}

/// The first golden vector's envelope (hex) and message id.
fn vector_envelope() -> (String, String) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../schemas/envelope/vectors/envelope-v1.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json");
    let case = &v["cases"][0];
    (
        case["expected"]["envelope"]
            .as_str()
            .expect("hex")
            .to_owned(),
        case["inputs"]["message_id"]
            .as_str()
            .expect("id")
            .to_owned(),
    )
}

#[test]
fn inspect_shows_the_public_header_of_raw_and_framed_envelopes() {
    let (hex_env, message_id) = vector_envelope();
    let out = zenvelope(&["inspect", "--hex"], Some(hex_env.as_bytes()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(view["tenant"], "clinic-a");
    assert_eq!(view["kind"], "REQUEST");
    assert_eq!(view["message_id"], message_id.as_str());
    assert_eq!(view["recipients"][1]["type"], "RSA_OAEP_SHA256");
    assert_eq!(view["signature"]["key_id"], "journal-backend");
    // Confluent framing (magic 0, schema id 1) is accepted too, from a binary file.
    let mut framed = vec![0u8, 0, 0, 0, 1];
    framed.extend(hex_decode(&hex_env));
    let dir = std::env::temp_dir().join(format!("zenvelope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("framed.bin");
    std::fs::write(&file, &framed).expect("write");
    let out = zenvelope(&["inspect", file.to_str().expect("path")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let framed_view: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(framed_view, view);
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn inspect_reports_bad_input_clearly() {
    let out = zenvelope(&["inspect", "--hex"], Some(b"zz"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("input is not valid hex"),
        "{}",
        text(&out.stderr)
    );
    let out = zenvelope(&["inspect", "--hex"], Some(b"0400"));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a zenvelope envelope"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("version 2 is not supported"),
        "{}",
        text(&out.stderr)
    );
    let out = zenvelope(&["inspect", "/nonexistent/envelope.bin"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("cannot read /nonexistent/envelope.bin"));
    let out = zenvelope(&["inspect"], Some(b""));
    assert!(text(&out.stderr).contains("the input is empty"));
}

#[test]
fn help_teaches_with_examples() {
    let out = zenvelope(&["demo", "--help"], None);
    assert!(out.status.success());
    let help = text(&out.stdout);
    assert!(help.contains("Example: zenvelope demo"), "{help}");
    assert!(help.contains("--iterations"));
    let out = zenvelope(&["--help"], None);
    assert!(text(&out.stdout).contains("inspect"));
}

#[test]
fn keys_generate_writes_dev_keys_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().to_str().expect("utf-8 path");
    let args = [
        "keys",
        "generate",
        "--algorithm",
        "ecdsa",
        "--key-id",
        "clinic-notes",
        "--version",
        "3",
        "--out",
        out_dir,
    ];
    let out = zenvelope(&args, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("WARNING: DEV keys"));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("{ key_id = \"clinic-notes\", key_version = 3, spki_der_hex = \""),
        "{stdout}"
    );
    let secret = dir.path().join("danger-dev-clinic-notes-v3.pk8");
    let public = dir.path().join("clinic-notes-v3-public.der");
    assert!(secret.is_file() && public.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by others");
    }
    let before = std::fs::read(&secret).expect("read");
    let again = zenvelope(&args, None);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("pass --force"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(std::fs::read(&secret).expect("read"), before, "overwritten");
}

#[test]
fn demo_asks_a_configured_openai_compatible_model_through_the_egress_proxy() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let model = runtime
        .block_on(zenvelope_tests::model_server::ModelServer::start())
        .expect("model server");
    let api_key = "sk-test-CANARY-KEY-91ab";
    let audit_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_zenvelope"))
        .args([
            "demo",
            "--entries",
            "1",
            "--iterations",
            "100000",
            "--rsa-bits",
            "2048",
            "--provider",
            "openai",
            "--model",
            "gpt-test",
            "--provider-url",
            &model.base_url(),
        ])
        .arg("--audit-dir")
        .arg(audit_dir.path())
        .env("ZENVELOPE_OPENAI_API_KEY", api_key)
        .output()
        .expect("demo");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("model: OpenAi gpt-test at http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("DANGER: plain http://"), "{stdout}");
    assert!(
        stdout.contains("/gpt-test, sealed and signed the answer"),
        "{stdout}"
    );
    assert!(!stdout.contains("NOT a model"), "{stdout}");
    assert_eq!(model.calls(), 1, "one model call for one entry");
    for output in [&stdout, &stderr] {
        assert!(!output.contains(api_key), "the API key was printed");
        assert!(!output.contains("Slept four hours"), "plaintext printed");
    }
}
