//! Criterion benches for sealing and opening envelopes and for the primitives under them.
//!
//! Run with `scripts/bench`, which also runs `openssl speed` in the same session and
//! reports every figure as a ratio to it (docs/benchmarks.md). Groups and ids (the
//! script reads `target/criterion/<group>/<id>/new/estimates.json`):
//!
//! - `envelope_seal/{full,dek_session,payload}/<bytes>` and
//!   `envelope_open/{full,user,payload}/<bytes>` at
//!   1 KiB, 16 KiB and 1 MiB, plus `envelope_seal/unsigned{,_dek_session}/16384`. `full`
//!   is a signed envelope (RSA-PSS-3072) to a user (PBKDF2 KEK) and a fleet RSA-3072 key;
//!   `payload` is only the AES-256-GCM blob, what the 0.8x-of-OpenSSL target is about.
//! - `aead_aes256gcm/*/16384`: our blob (aws-lc-rs) against raw aws-lc-rs calls (also
//!   averaged over buffer placements) and the RustCrypto `aes-gcm` crate.
//! - `pbkdf2/*/600000`: the user-key derivation at the default iteration count.
//! - `rsa/*/<bits>`: OAEP wrap/unwrap, PSS sign/verify, and the `rsa` crate's OAEP.
//!
//! Under `cargo test` (criterion's test mode) every bench runs once, as a smoke test.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, KeyInit};
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput};
use rand_core::OsRng;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use zenvelope_envelope::primitives::{aes256gcm_open_blob, aes256gcm_seal_blob};
use zenvelope_envelope::{
    DEFAULT_PBKDF2_ITERATIONS, Dek, DekSessionPolicy, DekUnwrapper, DekWrapper, Envelope,
    FleetPrivateKey, FleetPublicKey, HeaderFields, Keyring, Kind, MetadataKey, Opener, Passphrase,
    Purpose, Sealer, SigningKey, UserKey, VerifyingKey, kek_salt, payload_aad,
};

const TENANT: &str = "clinic-a";
const IDENTITY: &str = "alice@example.com";
const PASSPHRASE: &str = "correct horse battery staple";
const SIZES: [usize; 3] = [1024, 16 * 1024, 1024 * 1024];
const AEAD_SIZE: usize = 16 * 1024;
/// Iterations for the user key used by the envelope benches (derived once, outside timing).
const ENVELOPE_PBKDF2_ITERATIONS: u32 = 100_000;

/// Keys and inputs shared by all groups; generated once, outside any measurement.
struct Fixture {
    user: Arc<UserKey>,
    signer: Arc<SigningKey>,
    /// Fleet RSA-3072 private keyring (the enclave's) and its public counterpart.
    fleet_3072: Keyring<FleetPrivateKey>,
    fleet_3072_public: Arc<Keyring<FleetPublicKey>>,
    fleet_2048: Keyring<FleetPrivateKey>,
    fleet_2048_public: Keyring<FleetPublicKey>,
    /// The same RSA-3072 fleet key, loaded into the `rsa` crate.
    rsa_crate_3072: RsaPrivateKey,
    fields: HeaderFields,
}

fn must<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("bench failed: {what}: {e:?}"),
    }
}

fn fleet(bits: usize) -> (Keyring<FleetPrivateKey>, Keyring<FleetPublicKey>, Vec<u8>) {
    let key = must(FleetPrivateKey::generate("fleet", 1, bits), "fleet key");
    let public = must(
        FleetPublicKey::from_spki_der("fleet", 1, key.public_key().spki_der()),
        "fleet public key",
    );
    let pkcs8 = must(key.to_pkcs8_der(), "fleet PKCS#8").to_vec();
    (
        must(Keyring::new().with(key), "fleet keyring"),
        must(Keyring::new().with(public), "fleet public keyring"),
        pkcs8,
    )
}

impl Fixture {
    fn new() -> Self {
        let user = Arc::new(must(
            UserKey::derive_with_iterations(
                TENANT,
                IDENTITY,
                &Passphrase::new(PASSPHRASE),
                ENVELOPE_PBKDF2_ITERATIONS,
            ),
            "user key",
        ));
        let signer = Arc::new(must(
            SigningKey::generate("journal-backend", 1, 3072),
            "signing key",
        ));
        let (fleet_3072, fleet_3072_public, pkcs8_3072) = fleet(3072);
        let (fleet_2048, fleet_2048_public, _) = fleet(2048);
        let rsa_crate_3072 = must(
            RsaPrivateKey::from_pkcs8_der(&pkcs8_3072),
            "rsa crate key import",
        );
        let fields = HeaderFields {
            tenant: TENANT.into(),
            subject: MetadataKey::from_bytes([7; 32]).pseudonym(TENANT, IDENTITY),
            kind: Kind::Request,
            purpose: Purpose::IndividualRequest,
            content_type: "application/octet-stream".into(),
            schema_id: 0,
        };
        Self {
            user,
            signer,
            fleet_3072,
            fleet_3072_public: Arc::new(fleet_3072_public),
            fleet_2048,
            fleet_2048_public,
            rsa_crate_3072,
            fields,
        }
    }

    /// A signed sealer to the user and the fleet RSA-3072 key, one DEK per message.
    fn sealer(&self) -> Sealer {
        self.unsigned_sealer().with_signer(self.signer.clone())
    }

    /// The same recipients, no signature.
    fn unsigned_sealer(&self) -> Sealer {
        Sealer::new(vec![
            self.user.clone() as Arc<dyn DekWrapper>,
            self.fleet_3072_public.clone() as Arc<dyn DekWrapper>,
        ])
    }

    /// What the enclave runs: requires a signature by the producer's key.
    fn opener(&self) -> Opener {
        let trusted: Keyring<VerifyingKey> = must(
            Keyring::new().with(must(self.signer.verifying_key(), "verifying key")),
            "trusted keyring",
        );
        Opener::new(trusted)
    }

    fn sealed(&self, size: usize) -> Envelope {
        must(self.sealer().seal(&self.fields, &plaintext(size)), "seal")
    }
}

fn plaintext(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1024 * 1024 => format!("{} MiB", s / (1024 * 1024)),
        s if s >= 1024 => format!("{} KiB", s / 1024),
        s => format!("{s} B"),
    }
}

/// A payload key and IV, and the additional data of a real envelope (its length does not
/// depend on the payload's), so the payload-only benches hash the same AAD as the full path.
fn blob_inputs(fx: &Fixture) -> ([u8; 32], [u8; 12], Vec<u8>) {
    let env = fx.sealed(1024);
    let aad = payload_aad(&env.header, &env.recipients);
    ([0x42; 32], [0x24; 12], aad)
}

fn bench_seal(c: &mut Criterion, fx: &Fixture) {
    let (key, iv, aad) = blob_inputs(fx);
    let mut g = c.benchmark_group("envelope_seal");
    for size in SIZES {
        let pt = plaintext(size);
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1024 * 1024 {
            g.sample_size(20);
        } else {
            g.sample_size(50);
        }

        // Fresh DEK per message: DEK + RSA-OAEP-3072 wrap + user wrap + AES-GCM + PSS sign.
        let mut sealer = fx.sealer();
        g.bench_with_input(BenchmarkId::new("full", size), &pt, |b, pt| {
            b.iter(|| must(sealer.seal(&fx.fields, black_box(pt)), "seal"));
        });

        // DEK session: the wraps happen once per 1000 messages / 60 s.
        let mut session = fx.sealer().with_dek_session(DekSessionPolicy {
            max_messages: 1000,
            max_age_ms: 60_000,
        });
        g.bench_with_input(BenchmarkId::new("dek_session", size), &pt, |b, pt| {
            b.iter(|| must(session.seal(&fx.fields, black_box(pt)), "seal"));
        });

        // Without the signature (which dominates), the DEK session's saving is visible.
        if size == AEAD_SIZE {
            let mut unsigned = fx.unsigned_sealer();
            g.bench_with_input(BenchmarkId::new("unsigned", size), &pt, |b, pt| {
                b.iter(|| must(unsigned.seal(&fx.fields, black_box(pt)), "seal"));
            });
            let mut unsigned_session = fx.unsigned_sealer().with_dek_session(DekSessionPolicy {
                max_messages: 1000,
                max_age_ms: 60_000,
            });
            g.bench_with_input(
                BenchmarkId::new("unsigned_dek_session", size),
                &pt,
                |b, pt| {
                    b.iter(|| must(unsigned_session.seal(&fx.fields, black_box(pt)), "seal"));
                },
            );
        }

        // Payload only: the AES-256-GCM blob (key setup, copy, encrypt, tag).
        g.bench_with_input(BenchmarkId::new("payload", size), &pt, |b, pt| {
            b.iter(|| aes256gcm_seal_blob(black_box(&key), iv, black_box(&aad), black_box(pt)));
        });
        eprintln!("envelope_seal at {} done", size_label(size));
    }
    g.finish();
}

fn bench_open(c: &mut Criterion, fx: &Fixture) {
    let (key, iv, aad) = blob_inputs(fx);
    let opener = fx.opener();
    let mut g = c.benchmark_group("envelope_open");
    for size in SIZES {
        let pt = plaintext(size);
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1024 * 1024 {
            g.sample_size(20);
        } else {
            g.sample_size(50);
        }
        let env = fx.sealed(size);
        let batch = if size >= 1024 * 1024 {
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };

        // In the enclave: verify PSS-3072, unwrap RSA-OAEP-3072, check commitment, decrypt.
        // The envelope is cloned in setup, outside the timing.
        g.bench_with_input(BenchmarkId::new("full", size), &env, |b, env| {
            b.iter_batched(
                || env.clone(),
                |e| drop(must(opener.open(e, &fx.fleet_3072), "open")),
                batch,
            );
        });

        // On the user's device: verify PSS-3072, unwrap with the KEK (AES-GCM), decrypt.
        g.bench_with_input(BenchmarkId::new("user", size), &env, |b, env| {
            b.iter_batched(
                || env.clone(),
                |e| drop(must(opener.open(e, &*fx.user), "open")),
                batch,
            );
        });

        // Payload only: the AES-256-GCM blob, including zeroizing the plaintext on drop
        // (`Plaintext` wipes through zeroize's bulk slice path).
        let blob = aes256gcm_seal_blob(&key, iv, &aad, &pt);
        g.bench_with_input(BenchmarkId::new("payload", size), &blob, |b, blob| {
            b.iter(|| {
                must(
                    aes256gcm_open_blob(black_box(&key), &aad, black_box(blob)),
                    "open",
                )
            });
        });
        eprintln!("envelope_open at {} done", size_label(size));
    }
    g.finish();
}

fn bench_aead(c: &mut Criterion, fx: &Fixture) {
    let (key, iv, aad) = blob_inputs(fx);
    let pt = plaintext(AEAD_SIZE);
    let mut g = c.benchmark_group("aead_aes256gcm");
    g.throughput(Throughput::Bytes(AEAD_SIZE as u64));
    g.sample_size(50);

    // Ours: aws-lc-rs behind the blob format (per call: key setup, allocation, copy).
    g.bench_with_input(
        BenchmarkId::new("aws_lc_rs_seal", AEAD_SIZE),
        &pt,
        |b, pt| {
            b.iter(|| aes256gcm_seal_blob(black_box(&key), iv, &aad, black_box(pt)));
        },
    );
    let blob = aes256gcm_seal_blob(&key, iv, &aad, &pt);
    g.bench_with_input(
        BenchmarkId::new("aws_lc_rs_open", AEAD_SIZE),
        &blob,
        |b, blob| {
            b.iter(|| {
                must(
                    aes256gcm_open_blob(black_box(&key), &aad, black_box(blob)),
                    "open",
                )
            });
        },
    );

    // aws-lc-rs with none of the blob's overhead: key set up once, sealed in place.
    let raw = aws_lc_rs::aead::LessSafeKey::new(must(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &key),
        "aws-lc key",
    ));
    let mut buf = pt.clone();
    g.bench_function(BenchmarkId::new("aws_lc_rs_raw_seal", AEAD_SIZE), |b| {
        b.iter(|| {
            must(
                raw.seal_in_place_separate_tag(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
                    aws_lc_rs::aead::Aad::from(&aad[..]),
                    black_box(&mut buf[..]),
                ),
                "seal",
            )
        });
    });

    // And opened in place: ciphertext||tag copied into a reused buffer, then decrypted.
    let mut sealed = pt.clone();
    let raw_tag = must(
        raw.seal_in_place_separate_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
            aws_lc_rs::aead::Aad::from(&aad[..]),
            &mut sealed,
        ),
        "seal",
    );
    sealed.extend_from_slice(raw_tag.as_ref());
    let mut work = sealed.clone();
    g.bench_function(BenchmarkId::new("aws_lc_rs_raw_open", AEAD_SIZE), |b| {
        b.iter(|| {
            work.copy_from_slice(&sealed);
            must(
                raw.open_in_place(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
                    aws_lc_rs::aead::Aad::from(&aad[..]),
                    black_box(&mut work[..]),
                ),
                "open",
            )
            .len()
        });
    });

    // The same through aws-lc-rs's separate-tag API (EVP_AEAD_CTX_open_gather), which
    // would fit the blob's tag-first layout without moving the tag.
    let (sealed_ct, sealed_tag) = sealed.split_at(AEAD_SIZE);
    let mut work_ct = sealed_ct.to_vec();
    g.bench_function(
        BenchmarkId::new("aws_lc_rs_raw_open_separate_tag", AEAD_SIZE),
        |b| {
            b.iter(|| {
                work_ct.copy_from_slice(sealed_ct);
                must(
                    raw.open_in_place_separate_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
                        aws_lc_rs::aead::Aad::from(&aad[..]),
                        sealed_tag,
                        black_box(&mut work_ct[..]),
                    ),
                    "open",
                )
                .len()
            });
        },
    );

    // Buffer placement probe. On the benchmark machine aws-lc's in-place AES-GCM decrypt
    // of the same 16 KiB ran at either ~1x or ~0.5x OpenSSL depending only on where the
    // buffer sat in memory (encrypt did not). These two average over 64 placements, a
    // 64-byte step across 4 KiB, iteration by iteration, so they do not depend on where
    // the allocator happened to put one buffer.
    let mut arena = vec![0u8; AEAD_SIZE + 16 + 4096 + 64];
    let pad = arena.as_ptr().align_offset(64);
    let mut turn = 0usize;
    let mut place = move || {
        turn = (turn + 1) % 64;
        pad + turn * 64
    };
    g.bench_function(
        BenchmarkId::new("aws_lc_rs_raw_seal_sweep", AEAD_SIZE),
        |b| {
            b.iter(|| {
                let at = place();
                let w = &mut arena[at..at + AEAD_SIZE];
                w.copy_from_slice(&pt);
                must(
                    raw.seal_in_place_separate_tag(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
                        aws_lc_rs::aead::Aad::from(&aad[..]),
                        black_box(w),
                    ),
                    "seal",
                )
            });
        },
    );
    g.bench_function(
        BenchmarkId::new("aws_lc_rs_raw_open_sweep", AEAD_SIZE),
        |b| {
            b.iter(|| {
                let at = place();
                let w = &mut arena[at..at + sealed.len()];
                w.copy_from_slice(&sealed);
                must(
                    raw.open_in_place(
                        aws_lc_rs::aead::Nonce::assume_unique_for_key(iv),
                        aws_lc_rs::aead::Aad::from(&aad[..]),
                        black_box(w),
                    ),
                    "open",
                )
                .len()
            });
        },
    );

    // The RustCrypto `aes-gcm` crate, same shape as our blob: key setup, copy, seal.
    g.bench_with_input(
        BenchmarkId::new("aes_gcm_crate_seal", AEAD_SIZE),
        &pt,
        |b, pt| {
            b.iter(|| {
                let cipher = must(Aes256Gcm::new_from_slice(black_box(&key)), "aes-gcm key");
                let mut buf = pt.to_vec();
                let tag = must(
                    cipher.encrypt_in_place_detached(&iv.into(), &aad, &mut buf),
                    "aes-gcm seal",
                );
                (buf, tag)
            });
        },
    );
    let cipher = must(Aes256Gcm::new_from_slice(&key), "aes-gcm key");
    let mut ct = pt.clone();
    let tag = must(
        cipher.encrypt_in_place_detached(&iv.into(), &aad, &mut ct),
        "aes-gcm seal",
    );
    g.bench_with_input(
        BenchmarkId::new("aes_gcm_crate_open", AEAD_SIZE),
        &ct,
        |b, ct| {
            b.iter(|| {
                let cipher = must(Aes256Gcm::new_from_slice(black_box(&key)), "aes-gcm key");
                let mut buf = ct.to_vec();
                must(
                    cipher.decrypt_in_place_detached(&iv.into(), &aad, &mut buf, &tag),
                    "aes-gcm open",
                );
                buf
            });
        },
    );
    g.finish();
}

fn bench_pbkdf2(c: &mut Criterion) {
    let passphrase = Passphrase::new(PASSPHRASE);
    let mut g = c.benchmark_group("pbkdf2");
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.throughput(Throughput::Elements(1));
    g.bench_function(
        BenchmarkId::new("user_key", DEFAULT_PBKDF2_ITERATIONS),
        |b| {
            b.iter(|| {
                must(
                    UserKey::derive_with_iterations(
                        TENANT,
                        IDENTITY,
                        black_box(&passphrase),
                        DEFAULT_PBKDF2_ITERATIONS,
                    ),
                    "derive",
                )
            });
        },
    );
    // The alternative: aws-lc-rs's PBKDF2-HMAC-SHA256 on the same salt and iterations.
    let salt = kek_salt(TENANT, IDENTITY);
    let iterations = must(
        NonZeroU32::new(DEFAULT_PBKDF2_ITERATIONS).ok_or("zero"),
        "iterations",
    );
    g.bench_function(
        BenchmarkId::new("aws_lc_rs", DEFAULT_PBKDF2_ITERATIONS),
        |b| {
            b.iter(|| {
                let mut out = [0u8; 32];
                aws_lc_rs::pbkdf2::derive(
                    aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
                    iterations,
                    &salt,
                    black_box(PASSPHRASE.as_bytes()),
                    &mut out,
                );
                out
            });
        },
    );
    g.finish();
}

fn bench_rsa(c: &mut Criterion, fx: &Fixture) {
    let dek = Dek::from_bytes([0x5a; 32]);
    let mut g = c.benchmark_group("rsa");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);

    for (bits, private, public) in [
        (2048, &fx.fleet_2048, &fx.fleet_2048_public),
        (3072, &fx.fleet_3072, &*fx.fleet_3072_public),
    ] {
        g.bench_function(BenchmarkId::new("wrap", bits), |b| {
            b.iter(|| must(public.wrap(black_box(&dek), TENANT, &mut OsRng), "wrap"));
        });
        let recipient = must(public.wrap(&dek, TENANT, &mut OsRng), "wrap");
        g.bench_function(BenchmarkId::new("unwrap", bits), |b| {
            b.iter(|| must(private.unwrap_dek(black_box(&recipient), TENANT), "unwrap"));
        });
    }

    // Signatures: RSA-PSS-3072 (producers) and ECDSA P-256 (the fleet's results).
    let msg = plaintext(1024);
    let ecdsa = must(SigningKey::generate_ecdsa_p256("ecdsa", 1), "ecdsa key");
    for (name, signer) in [("pss-3072", &*fx.signer), ("ecdsa-p256", &ecdsa)] {
        g.bench_function(BenchmarkId::new("sign", name), |b| {
            b.iter(|| must(signer.sign(black_box(&msg)), "sign"));
        });
        let verifying = must(signer.verifying_key(), "verifying key");
        let signature = must(signer.sign(&msg), "sign");
        let alg = signer.algorithm();
        g.bench_function(BenchmarkId::new("verify", name), |b| {
            b.iter(|| assert!(verifying.verify(alg, black_box(&msg), black_box(&signature))));
        });
    }

    // The rejected alternative: the `rsa` crate's OAEP-SHA256 with the same key. It reads
    // ciphertexts made by aws-lc-rs, which checks the key import.
    let sk = &fx.rsa_crate_3072;
    let pk = RsaPublicKey::from(sk);
    let wrapped = must(fx.fleet_3072_public.wrap(&dek, TENANT, &mut OsRng), "wrap");
    let check = must(
        sk.decrypt(Oaep::new::<Sha256>(), &wrapped.wrapped_key),
        "rsa crate decrypt",
    );
    assert_eq!(check.as_slice(), dek.expose_secret(), "rsa crate disagrees");
    g.bench_function(BenchmarkId::new("rsa_crate_encrypt", 3072), |b| {
        b.iter(|| {
            must(
                pk.encrypt(
                    &mut OsRng,
                    Oaep::new::<Sha256>(),
                    black_box(dek.expose_secret()),
                ),
                "encrypt",
            )
        });
    });
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("rsa_crate_decrypt", 3072), |b| {
        b.iter(|| {
            must(
                sk.decrypt(Oaep::new::<Sha256>(), black_box(&wrapped.wrapped_key)),
                "decrypt",
            )
        });
    });
    g.bench_function(BenchmarkId::new("rsa_crate_decrypt_blinded", 3072), |b| {
        b.iter(|| {
            must(
                sk.decrypt_blinded(
                    &mut OsRng,
                    Oaep::new::<Sha256>(),
                    black_box(&wrapped.wrapped_key),
                ),
                "decrypt",
            )
        });
    });
    g.finish();
}

fn main() {
    let started = std::time::Instant::now();
    let fx = Fixture::new();
    eprintln!(
        "bench fixture (3 RSA keys, 1 PBKDF2) ready in {:.1?}",
        started.elapsed()
    );
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_seal(&mut c, &fx);
    bench_open(&mut c, &fx);
    bench_aead(&mut c, &fx);
    bench_pbkdf2(&mut c);
    bench_rsa(&mut c, &fx);
    c.final_summary();
}
