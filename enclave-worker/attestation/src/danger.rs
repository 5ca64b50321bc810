//! DANGER: a local dev CA that signs attestation documents in the real Nitro format.
//!
//! A document from [`DevAttestor`] proves nothing about an enclave: whoever holds the dev
//! CA can attest any PCRs. It exists so `enclave-app` and the producer SDK can run the
//! real format and the real verifier without Nitro hardware. Verifiers accept it only if
//! they pin [`DevCa::trust_anchor`]; production pins
//! [`TrustAnchor::aws_nitro_root_g1`](crate::TrustAnchor::aws_nitro_root_g1), which no dev
//! document chains to. The binary that enables it must print a start-up warning.
//!
//! Private keys live in zeroize-on-drop types (rcgen's `KeyPair` behind
//! [`zeroize::Zeroizing`], aws-lc's `EcdsaKeyPair` whose key is freed by aws-lc), and none
//! of the types here implement `Debug`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
};
use zeroize::Zeroizing;

use crate::format::{AttestationDocument, COSE_ALG_ES384, CoseSign1, ES384_PROTECTED_HEADER};
use crate::{AttestationRequest, Attestor, Error, TrustAnchor};

/// Common name of the dev root; it says what it is.
pub const DEV_ROOT_COMMON_NAME: &str = "zenvelope DEV attestation root - not AWS";
/// Common name of the dev intermediate.
pub const DEV_INTERMEDIATE_COMMON_NAME: &str = "zenvelope DEV attestation intermediate";
/// Module id prefix of dev documents, so a dev document is recognisable in logs.
pub const DEV_MODULE_ID_PREFIX: &str = "dev-";

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn dev_err(reason: impl std::fmt::Display) -> Error {
    Error::DevCertificate {
        reason: reason.to_string(),
    }
}

fn new_key() -> Result<Zeroizing<KeyPair>, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)
        .map(Zeroizing::new)
        .map_err(dev_err)
}

fn params(
    common_name: &str,
    is_ca: IsCa,
    not_before: SystemTime,
    not_after: SystemTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "ZZ");
    dn.push(DnType::OrganizationName, "zenvelope dev");
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.key_usages = match is_ca {
        IsCa::Ca(_) => vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ],
        _ => vec![KeyUsagePurpose::DigitalSignature],
    };
    p.is_ca = is_ca;
    p.not_before = not_before.into();
    p.not_after = not_after.into();
    p
}

struct CaLevel {
    params: CertificateParams,
    key: Zeroizing<KeyPair>,
    der: Vec<u8>,
}

impl CaLevel {
    fn issuer(&self) -> Issuer<'_, &KeyPair> {
        Issuer::from_params(&self.params, &*self.key)
    }
}

/// A dev certificate authority: a P-384 root, optionally an intermediate, issuing one
/// leaf per [`DevAttestor`]. Holds private keys; has no `Debug`.
pub struct DevCa {
    root: CaLevel,
    intermediate: Option<CaLevel>,
}

impl DevCa {
    /// Generates a root valid from an hour ago for ten years, and an intermediate with
    /// the same validity if `with_intermediate` (the real AWS chain has three CAs below
    /// the root; one is enough to exercise the chain walk).
    pub fn generate(with_intermediate: bool) -> Result<Self, Error> {
        let now = SystemTime::now();
        let (nb, na) = (now - HOUR, now + 3650 * DAY);
        let root_key = new_key()?;
        let root_params = params(
            DEV_ROOT_COMMON_NAME,
            IsCa::Ca(BasicConstraints::Unconstrained),
            nb,
            na,
        );
        let root_der = root_params
            .self_signed(&*root_key)
            .map_err(dev_err)?
            .der()
            .to_vec();
        let root = CaLevel {
            params: root_params,
            key: root_key,
            der: root_der,
        };
        let intermediate = if with_intermediate {
            let key = new_key()?;
            let p = params(
                DEV_INTERMEDIATE_COMMON_NAME,
                IsCa::Ca(BasicConstraints::Constrained(0)),
                nb,
                na,
            );
            let der = p
                .signed_by(&*key, &root.issuer())
                .map_err(dev_err)?
                .der()
                .to_vec();
            Some(CaLevel {
                params: p,
                key,
                der,
            })
        } else {
            None
        };
        Ok(Self { root, intermediate })
    }

    /// The dev root, DER: what dev verifiers pin.
    pub fn root_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The trust anchor dev verifiers pin.
    pub fn trust_anchor(&self) -> Result<TrustAnchor, Error> {
        TrustAnchor::from_der(&self.root.der)
    }

    /// Issues a leaf valid from an hour ago for 30 days and returns an attestor that
    /// reports `pcrs` under `module_id` (prefixed with `dev-`).
    pub fn issue(
        &self,
        module_id: &str,
        pcrs: BTreeMap<u8, Vec<u8>>,
    ) -> Result<DevAttestor, Error> {
        let now = SystemTime::now();
        self.issue_with_validity(module_id, pcrs, now - HOUR, now + 30 * DAY)
    }

    /// Like [`DevCa::issue`] with an explicit leaf validity period (tests use an expired one).
    pub fn issue_with_validity(
        &self,
        module_id: &str,
        pcrs: BTreeMap<u8, Vec<u8>>,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<DevAttestor, Error> {
        let module_id = format!("{DEV_MODULE_ID_PREFIX}{module_id}");
        let leaf_key = new_key()?;
        let leaf_params = params(&module_id, IsCa::NoCa, not_before, not_after);
        let top = self.intermediate.as_ref().unwrap_or(&self.root);
        let certificate = leaf_params
            .signed_by(&*leaf_key, &top.issuer())
            .map_err(dev_err)?
            .der()
            .to_vec();
        // The PKCS#8 copy lives only as long as it takes aws-lc to parse it.
        let pkcs8 = Zeroizing::new(leaf_key.serialize_der());
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8)
            .map_err(|_| dev_err("the leaf key could not be loaded"))?;
        let mut cabundle = vec![self.root.der.clone()];
        if let Some(i) = &self.intermediate {
            cabundle.push(i.der.clone());
        }
        Ok(DevAttestor {
            module_id,
            pcrs,
            certificate,
            cabundle,
            key,
            rng: SystemRandom::new(),
        })
    }
}

/// Dev PCRs shaped like a real document's: PCR0..=15, each 48 bytes; PCR0/1/2 are
/// SHA-384 of `label` and the index, the rest zero (as the NSM reports unused PCRs).
pub fn dev_measurements(label: &[u8]) -> BTreeMap<u8, Vec<u8>> {
    (0u8..16)
        .map(|i| {
            let v = if i <= 2 {
                let mut ctx = digest::Context::new(&digest::SHA384);
                ctx.update(b"zenvelope/dev-pcr/");
                ctx.update(label);
                ctx.update(&[i]);
                ctx.finish().as_ref().to_vec()
            } else {
                vec![0u8; 48]
            };
            (i, v)
        })
        .collect()
}

/// Signs attestation documents with a dev leaf key. Holds a private key; has no `Debug`.
pub struct DevAttestor {
    module_id: String,
    pcrs: BTreeMap<u8, Vec<u8>>,
    certificate: Vec<u8>,
    cabundle: Vec<Vec<u8>>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl DevAttestor {
    /// The leaf certificate, DER.
    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// The CA bundle, root first.
    pub fn cabundle(&self) -> &[Vec<u8>] {
        &self.cabundle
    }

    /// The module id this attestor reports.
    pub fn module_id(&self) -> &str {
        &self.module_id
    }

    /// The unsigned payload this attestor would sign for `request` at `timestamp_ms`.
    pub fn document(&self, request: &AttestationRequest, timestamp_ms: u64) -> AttestationDocument {
        AttestationDocument {
            module_id: self.module_id.clone(),
            timestamp_ms,
            pcrs: self.pcrs.clone(),
            certificate: self.certificate.clone(),
            cabundle: self.cabundle.clone(),
            public_key: request.public_key.clone(),
            user_data: request.user_data.clone(),
            nonce: request.nonce.clone(),
        }
    }

    /// Wraps arbitrary payload bytes in a COSE_Sign1 with the ES384 protected header and
    /// signs them. Used for dev documents and, in tests, for well-signed malformed payloads.
    pub fn sign_payload(&self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_with_protected(&ES384_PROTECTED_HEADER, payload)
    }

    /// Like [`DevAttestor::sign_payload`] with explicit protected-header bytes; the
    /// signature is always ES384. Tests use it to present other `alg` values.
    pub fn sign_with_protected(&self, protected: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
        debug_assert_eq!(COSE_ALG_ES384, -35);
        let tbs = crate::format::sig_structure(protected, payload)?;
        let sig = self
            .key
            .sign(&self.rng, &tbs)
            .map_err(|_| Error::SigningFailed)?;
        let signature = sig.as_ref().try_into().map_err(|_| Error::SigningFailed)?;
        CoseSign1 {
            protected: protected.to_vec(),
            payload: payload.to_vec(),
            signature,
        }
        .encode()
    }

    /// Signs a document for `request` with an explicit timestamp.
    pub fn attest_at(
        &self,
        request: &AttestationRequest,
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, Error> {
        request.check()?;
        let payload = self.document(request, timestamp_ms).encode()?;
        self.sign_payload(&payload)
    }
}

impl Attestor for DevAttestor {
    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, Error> {
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(1);
        self.attest_at(request, now_ms)
    }
}
