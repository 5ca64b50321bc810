//! The admission processor's first stage: stateless checks on every request, in order,
//! without any key to open it. Admitted records go on, byte for byte, to the repartition
//! topic keyed by tenant; refused ones go to the DLQ with their reason code and a
//! rejection notice for the client.

use std::collections::BTreeMap;
use std::sync::Arc;

use zenvelope_envelope::{Envelope, Kind, Limits};
use zenvelope_runtime::{Disposition, Handler, Inbound, Outbound};
use zenvelope_schemas::names::header;
use zenvelope_schemas::{Rejection, SchemaCodec, Subject};

use crate::config::{Tenant, TopicsConfig};
use crate::telemetry::Decided;

/// Reason codes this processor writes (besides the envelope format's own:
/// `malformed`, `oversized`, `unsupported_version`, `unsigned`, `untrusted_signer`,
/// `bad_signature`, and the framing codes of `zenvelope-schemas`).
pub mod reason {
    /// The envelope is not a `REQUEST`.
    pub const NOT_A_REQUEST: &str = "not_a_request";
    /// The envelope names a tenant this processor does not know.
    pub const UNKNOWN_TENANT: &str = "unknown_tenant";
    /// The record's Kafka key is not the envelope's subject pseudonym.
    pub const KEY_MISMATCH: &str = "key_mismatch";
    /// The purpose of use is not allowed for the tenant.
    pub const PURPOSE_NOT_ALLOWED: &str = "purpose_not_allowed";
    /// The tenant's tier quota for the period is used up.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
}

/// The first stage's handler.
pub struct AdmissionCheck {
    tenants: Arc<BTreeMap<String, Tenant>>,
    topics: TopicsConfig,
    codec: Arc<SchemaCodec>,
    limits: Limits,
}

/// A refusal: the reason code and a sentence (no PHI: ids, codes and names only).
pub(crate) struct Refusal {
    pub(crate) code: &'static str,
    pub(crate) detail: String,
}

impl Refusal {
    fn new(code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

impl AdmissionCheck {
    /// A handler checking requests for `tenants`.
    pub fn new(
        tenants: Arc<BTreeMap<String, Tenant>>,
        topics: TopicsConfig,
        codec: Arc<SchemaCodec>,
    ) -> Self {
        Self {
            tenants,
            topics,
            codec,
            limits: Limits::default(),
        }
    }

    /// Every check, in order; the first failure decides.
    async fn check(&self, msg: &Inbound) -> Result<Envelope, Box<(Option<Envelope>, Refusal)>> {
        let env = match self.codec.decode_envelope(&msg.payload, &self.limits).await {
            Ok(env) => env,
            Err(e) => {
                return Err(Box::new((
                    None,
                    Refusal::new(
                        e.reason_code(),
                        format!("The record is not a well-formed envelope: {e}"),
                    ),
                )));
            }
        };
        let refuse =
            |code, detail: String| Err(Box::new((Some(env.clone()), Refusal::new(code, detail))));
        let h = &env.header;
        if h.kind != Kind::Request {
            return refuse(
                reason::NOT_A_REQUEST,
                format!("The envelope is a {}, not a REQUEST.", h.kind.symbol()),
            );
        }
        let Some(tenant) = self.tenants.get(&h.tenant) else {
            return refuse(
                reason::UNKNOWN_TENANT,
                format!("Tenant {:?} is not registered with admission.", h.tenant),
            );
        };
        if msg.key.as_deref() != Some(h.subject.as_bytes()) {
            return refuse(
                reason::KEY_MISMATCH,
                "The record's key is not the envelope's subject pseudonym.".to_owned(),
            );
        }
        if let Err(e) = tenant.producers.verify(&env) {
            return refuse(
                e.reason_code(),
                format!("The request's signature is not accepted: {e}"),
            );
        }
        if !tenant.purposes.contains(&h.purpose) {
            return refuse(
                reason::PURPOSE_NOT_ALLOWED,
                format!(
                    "Purpose {} is not allowed for tenant {:?}.",
                    h.purpose.symbol(),
                    h.tenant
                ),
            );
        }
        Ok(env)
    }
}

/// The headers an admitted record carries on: the producer's, plus the verified tenant,
/// subject and message id.
pub(crate) fn admitted_headers(msg: &Inbound, env: &Envelope) -> Vec<(String, Vec<u8>)> {
    let ours = [header::TENANT, header::SUBJECT, header::MESSAGE_ID];
    let mut headers: Vec<(String, Vec<u8>)> = msg
        .headers
        .iter()
        .filter(|(k, _)| !ours.contains(&k.as_str()))
        .cloned()
        .collect();
    headers.push((
        header::TENANT.to_owned(),
        env.header.tenant.clone().into_bytes(),
    ));
    headers.push((
        header::SUBJECT.to_owned(),
        env.header.subject.clone().into_bytes(),
    ));
    headers.push((
        header::MESSAGE_ID.to_owned(),
        env.header.message_id.to_string().into_bytes(),
    ));
    headers
}

/// Who a refused request names, as far as it could be read (public header facts).
#[derive(Default)]
pub(crate) struct Named {
    pub(crate) message_id: Option<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) subject: Option<String>,
}

impl Named {
    fn of(env: Option<&Envelope>) -> Self {
        env.map_or_else(Self::default, |e| Self {
            message_id: Some(e.header.message_id.to_string()),
            tenant: Some(e.header.tenant.clone()),
            subject: Some(e.header.subject.clone()),
        })
    }
}

/// The dead letter and the client's rejection notice for a refused request.
pub(crate) async fn refuse(
    codec: &SchemaCodec,
    topics: &TopicsConfig,
    msg: &Inbound,
    named: Named,
    refusal: Refusal,
    retry_after_ms: Option<i64>,
) -> Disposition {
    Decided {
        stage: "admission",
        outcome: "refused",
        reason: refusal.code,
    }
    .emit();
    let notice = Rejection {
        message_id: named
            .message_id
            .as_deref()
            .and_then(|m| uuid::Uuid::parse_str(m).ok()),
        tenant: named.tenant.clone(),
        subject: named.subject.clone(),
        reason_code: refusal.code.to_owned(),
        reason_detail: refusal.detail.clone(),
        retry_after_ms,
        rejected_at_ms: crate::now_ms(),
    };
    let mut also = Vec::new();
    match codec.encode(Subject::RejectionsValue, &notice).await {
        Ok(value) => {
            // Keyed by the subject the envelope names, so the client's own partition
            // carries it; a record that did not decode keeps its original key.
            let key = named
                .subject
                .as_ref()
                .map(|s| s.clone().into_bytes())
                .or_else(|| msg.key.clone());
            let mut out = Outbound::new(&topics.rejections, key, value)
                .with_header(header::REASON, refusal.code);
            for (name, value) in [
                (header::TENANT, &named.tenant),
                (header::SUBJECT, &named.subject),
                (header::MESSAGE_ID, &named.message_id),
            ] {
                if let Some(v) = value {
                    out = out.with_header(name, v.clone());
                }
            }
            also.push(out);
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot encode a rejection notice; the dead letter still records the refusal.");
        }
    }
    Disposition::DeadLetter {
        reason_code: refusal.code.to_owned(),
        detail: refusal.detail,
        also,
    }
}

impl Handler for AdmissionCheck {
    async fn handle(&self, msg: Arc<Inbound>) -> Disposition {
        match self.check(&msg).await {
            Ok(env) => {
                Decided {
                    stage: "admission",
                    outcome: "passed",
                    reason: "",
                }
                .emit();
                let out = Outbound {
                    topic: self.topics.by_tenant.clone(),
                    key: Some(env.header.tenant.clone().into_bytes()),
                    payload: msg.payload.clone(),
                    headers: admitted_headers(&msg, &env),
                };
                Disposition::Produce(vec![out])
            }
            Err(refused) => {
                let (env, refusal) = *refused;
                refuse(
                    &self.codec,
                    &self.topics,
                    &msg,
                    Named::of(env.as_ref()),
                    refusal,
                    None,
                )
                .await
            }
        }
    }
}
