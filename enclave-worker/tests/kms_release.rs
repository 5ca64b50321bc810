//! Fleet key release: the `Recipient` path against an in-process server speaking the KMS
//! JSON protocol (it verifies the attestation document with the dev CA, pins PCR0 like a
//! key policy, and answers a CMS `CiphertextForRecipient`), and the `danger` path against
//! a real moto server.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use zenvelope_attestation::danger::{DevAttestor, DevCa, dev_measurements};
use zenvelope_attestation::{TrustAnchor, verify};
use zenvelope_enclave::kms::danger::{
    build_recipient_ciphertext, danger_release_without_recipient, local_kms_client,
};
use zenvelope_enclave::kms::{
    KmsError, PURPOSE_FLEET_KEY, SealedKey, attested_measurement, release_fleet_key,
};
use zenvelope_envelope::FleetPrivateKey;

const REGION: &str = "eu-west-1";
const KEY_ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/test";

fn fleet_key() -> FleetPrivateKey {
    FleetPrivateKey::generate("fleet", 3, 2048).expect("fleet key")
}

fn sealed(blob: Vec<u8>) -> SealedKey {
    SealedKey {
        key_id: "fleet".to_owned(),
        key_version: 3,
        ciphertext_blob: blob,
        encryption_context: SealedKey::standard_context(PURPOSE_FLEET_KEY, "fleet", 3),
        kms_key_id: None,
    }
}

// ---------------------------------------------------------------------------------------
// A KMS stand-in for `Decrypt` with `Recipient`.

struct FakeKms {
    /// The blob it accepts, the context it requires, and what the blob decrypts to.
    blob: Vec<u8>,
    context: BTreeMap<String, String>,
    plaintext: Vec<u8>,
    /// The dev CA root, and the PCR0 the "key policy" requires.
    anchor: TrustAnchor,
    pcr0: Vec<u8>,
    /// Public keys from the attestation documents it accepted.
    seen_keys: Mutex<Vec<Vec<u8>>>,
}

fn kms_error(kind: &str, message: &str) -> (u16, Value) {
    (400, json!({"__type": kind, "message": message}))
}

impl FakeKms {
    fn decrypt(&self, target: Option<&str>, body: &Value) -> (u16, Value) {
        if target != Some("TrentService.Decrypt") {
            return kms_error("UnsupportedOperationException", "only Decrypt");
        }
        let blob = body["CiphertextBlob"]
            .as_str()
            .and_then(|b| B64.decode(b).ok());
        if blob.as_deref() != Some(self.blob.as_slice()) {
            return kms_error("InvalidCiphertextException", "unknown blob");
        }
        let context: BTreeMap<String, String> =
            serde_json::from_value(body["EncryptionContext"].clone()).unwrap_or_default();
        if context != self.context {
            return kms_error("InvalidCiphertextException", "wrong encryption context");
        }
        let recipient = &body["Recipient"];
        if recipient["KeyEncryptionAlgorithm"] != "RSAES_OAEP_SHA_256" {
            return kms_error("ValidationException", "KeyEncryptionAlgorithm");
        }
        let Some(document) = recipient["AttestationDocument"]
            .as_str()
            .and_then(|d| B64.decode(d).ok())
        else {
            return kms_error("ValidationException", "no attestation document");
        };
        let verified = match verify(&document, &self.anchor, SystemTime::now()) {
            Ok(v) => v,
            Err(_) => return kms_error("AccessDeniedException", "attestation does not verify"),
        };
        if verified.pcr(0) != Some(self.pcr0.as_slice()) {
            return kms_error(
                "AccessDeniedException",
                "PCR0 is not allowed by the key policy",
            );
        }
        let Some(public_key) = verified.public_key() else {
            return kms_error("ValidationException", "no public key in the document");
        };
        self.seen_keys
            .lock()
            .expect("lock")
            .push(public_key.to_vec());
        let cms = build_recipient_ciphertext(&self.plaintext, public_key, &SystemRandom::new())
            .expect("cms");
        (
            200,
            json!({
                "KeyId": KEY_ARN,
                "CiphertextForRecipient": B64.encode(cms),
                "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            }),
        )
    }
}

/// Serves HTTP/1.1 (keep-alive, content-length bodies) on loopback.
async fn serve_fake_kms(kms: Arc<FakeKms>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kms = kms.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut headers = HashMap::new();
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                        }
                    }
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (status, answer) =
                        kms.decrypt(headers.get("x-amz-target").map(String::as_str), &body);
                    let answer = answer.to_string();
                    let response = format!(
                        "HTTP/1.1 {status} {}\r\ncontent-type: application/x-amz-json-1.1\r\nx-amzn-requestid: test\r\ncontent-length: {}\r\n\r\n{answer}",
                        if status == 200 { "OK" } else { "Bad Request" },
                        answer.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

struct Setup {
    kms: Arc<FakeKms>,
    client: aws_sdk_kms::Client,
    ca: DevCa,
    fleet: FleetPrivateKey,
}

async fn setup() -> Setup {
    let ca = DevCa::generate(true).expect("dev ca");
    let fleet = fleet_key();
    let pcrs = dev_measurements(b"zenvelope-enclave");
    let kms = Arc::new(FakeKms {
        blob: b"opaque kms ciphertext blob".to_vec(),
        context: SealedKey::standard_context(PURPOSE_FLEET_KEY, "fleet", 3),
        plaintext: fleet.to_pkcs8_der().expect("pkcs8").to_vec(),
        anchor: ca.trust_anchor().expect("anchor"),
        pcr0: pcrs[&0].clone(),
        seen_keys: Mutex::new(Vec::new()),
    });
    let addr = serve_fake_kms(kms.clone()).await;
    let client = local_kms_client(&format!("http://{addr}"), REGION);
    Setup {
        kms,
        client,
        ca,
        fleet,
    }
}

fn attestor(ca: &DevCa, label: &[u8]) -> DevAttestor {
    ca.issue("enclave", dev_measurements(label))
        .expect("attestor")
}

#[tokio::test]
async fn recipient_release_returns_the_fleet_key() {
    let s = setup().await;
    let attestor = attestor(&s.ca, b"zenvelope-enclave");
    let released = release_fleet_key(&s.client, &attestor, &sealed(s.kms.blob.clone()))
        .await
        .expect("released");
    assert_eq!(
        released.public_key().spki_der(),
        s.fleet.public_key().spki_der()
    );
    assert_eq!(
        (released.public_key().fingerprint(), 3),
        (s.fleet.public_key().fingerprint(), 3)
    );
    // The document carried a fresh ephemeral key each time, never the fleet key.
    let again = release_fleet_key(&s.client, &attestor, &sealed(s.kms.blob.clone()))
        .await
        .expect("released again");
    assert_eq!(
        again.public_key().spki_der(),
        s.fleet.public_key().spki_der()
    );
    let seen = s.kms.seen_keys.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0], seen[1]);
    assert!(
        seen.iter()
            .all(|k| k.as_slice() != s.fleet.public_key().spki_der())
    );
    assert_eq!(
        attested_measurement(&attestor).expect("pcr0"),
        s.kms
            .pcr0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
}

#[tokio::test]
async fn recipient_release_refusals_are_reported() {
    let s = setup().await;
    // Another image: the key policy refuses.
    let other = attestor(&s.ca, b"some-other-image");
    let err = release_fleet_key(&s.client, &other, &sealed(s.kms.blob.clone()))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, KmsError::Kms { code: Some(c), .. } if c == "AccessDeniedException"),
        "{err}"
    );
    // Another CA: the document does not verify.
    let stranger_ca = DevCa::generate(false).expect("ca");
    let stranger = attestor(&stranger_ca, b"zenvelope-enclave");
    let err = release_fleet_key(&s.client, &stranger, &sealed(s.kms.blob.clone()))
        .await
        .expect_err("refused");
    assert!(matches!(err, KmsError::Kms { .. }), "{err}");
    // Wrong encryption context.
    let mut wrong = sealed(s.kms.blob.clone());
    wrong
        .encryption_context
        .insert("zenvelope:key-version".to_owned(), "4".to_owned());
    let good = attestor(&s.ca, b"zenvelope-enclave");
    let err = release_fleet_key(&s.client, &good, &wrong)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, KmsError::Kms { code: Some(c), .. } if c == "InvalidCiphertextException"),
        "{err}"
    );
    // A released plaintext that is not a private key.
    let mut not_a_key = sealed(s.kms.blob.clone());
    not_a_key.key_id = "fleet".to_owned();
    let kms = Arc::new(FakeKms {
        blob: s.kms.blob.clone(),
        context: s.kms.context.clone(),
        plaintext: b"not a key".to_vec(),
        anchor: s.ca.trust_anchor().expect("anchor"),
        pcr0: s.kms.pcr0.clone(),
        seen_keys: Mutex::new(Vec::new()),
    });
    let addr = serve_fake_kms(kms).await;
    let client = local_kms_client(&format!("http://{addr}"), REGION);
    let err = release_fleet_key(&client, &good, &not_a_key)
        .await
        .expect_err("refused");
    assert!(matches!(err, KmsError::InvalidReleasedKey), "{err}");
}

// ---------------------------------------------------------------------------------------
// moto

/// A `moto_server` child process on a free loopback port, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_moto() -> Option<Moto> {
    let port = StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            println!("SKIPPED: moto_server is not installed or cannot start ({e}).");
            return None;
        }
    };
    let moto = Moto { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while StdTcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto_server did not start listening"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(moto)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn danger_release_against_moto() {
    let Some(moto) = start_moto() else {
        return;
    };
    let client = local_kms_client(&format!("http://127.0.0.1:{}", moto.port), REGION);
    let key_id = client
        .create_key()
        .description("zenvelope test fleet key wrapper")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("metadata")
        .key_id;
    let fleet = fleet_key();
    let context = SealedKey::standard_context(PURPOSE_FLEET_KEY, "fleet", 3);
    let blob = client
        .encrypt()
        .key_id(&key_id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(
            fleet.to_pkcs8_der().expect("pkcs8").to_vec(),
        ))
        .set_encryption_context(Some(context.clone().into_iter().collect()))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob
        .expect("blob")
        .into_inner();

    let mut key = sealed(blob.clone());
    key.kms_key_id = Some(key_id.clone());
    let released = danger_release_without_recipient(&client, &key)
        .await
        .expect("released");
    assert_eq!(
        released.public_key().spki_der(),
        fleet.public_key().spki_der()
    );

    // Another encryption context: KMS (moto) refuses.
    let mut wrong = sealed(blob.clone());
    wrong.encryption_context.insert(
        "zenvelope:purpose".to_owned(),
        "result-signing-key".to_owned(),
    );
    let err = danger_release_without_recipient(&client, &wrong)
        .await
        .expect_err("refused");
    assert!(matches!(err, KmsError::Kms { .. }), "{err}");

    // moto ignores Recipient and returns the plaintext: the real path refuses that.
    let ca = DevCa::generate(false).expect("ca");
    let attestor = attestor(&ca, b"zenvelope-enclave");
    let err = release_fleet_key(&client, &attestor, &sealed(blob))
        .await
        .expect_err("moto cannot do Recipient");
    assert!(
        matches!(
            err,
            KmsError::UnexpectedPlaintext
                | KmsError::MissingCiphertextForRecipient
                | KmsError::Kms { .. }
        ),
        "{err}"
    );
    drop(moto);
}
