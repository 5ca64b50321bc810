//! Every Kafka topic, Kafka header key, Schema Registry subject and media type used by
//! zenvelope, defined once. Other crates name them through these constants and enums,
//! never through string literals.

use crate::catalog::SchemaName;

/// Kafka topic names.
pub mod topic {
    /// Sealed analysis requests (`Envelope`, kind `REQUEST`), keyed by subject pseudonym.
    pub const REQUESTS: &str = "zenvelope.requests";
    /// Sealed results (`Envelope`, kind `RESULT` or `ERROR`), keyed by request id.
    pub const RESULTS: &str = "zenvelope.results";
    /// Messages that could not be processed, still sealed (`DeadLetter`).
    pub const DLQ: &str = "zenvelope.dlq";
    /// Audit events, no PHI (`AuditEvent`).
    pub const AUDIT: &str = "zenvelope.audit";
    /// Key directory, compacted (`KeyDirectoryEntry`), keyed by key id and version.
    pub const KEYS: &str = "zenvelope.keys";
    /// Sealed stored records (`Envelope`, kind `RECORD`).
    pub const VAULT: &str = "zenvelope.vault";
    /// Signed audit-log checkpoints (C2SP signed notes, text; not Avro).
    pub const CHECKPOINTS: &str = "zenvelope.checkpoints";
    /// Usage counters, compacted (`UsageCounter`), keyed `tenant/period/source/partition`:
    /// partials written by the admission processor, summed by readers. The admission
    /// partials are also the tier-quota state.
    pub const USAGE: &str = "zenvelope.usage";
    /// Requests the admission processor admitted, byte for byte as produced (the
    /// `zenvelope.requests` values), keyed by subject pseudonym: the enclave host's input
    /// when admission is deployed.
    pub const ADMITTED: &str = "zenvelope.admitted";
    /// The admission processor's repartition topic: requests that passed the stateless
    /// checks, keyed by tenant, so that one instance owns each tenant's quota.
    pub const ADMISSION_BY_TENANT: &str = "zenvelope.admission-by-tenant";
    /// Refused requests, told to clients (`Rejection`, no PHI), keyed by subject pseudonym.
    pub const REJECTIONS: &str = "zenvelope.rejections";
}

/// Kafka header keys. Values are UTF-8 text.
pub mod header {
    /// Schema id of the sealed plaintext (the envelope header's `schema_id`), decimal.
    pub const SCHEMA_ID: &str = "zenvelope-schema-id";
    /// Tenant id (also authenticated inside the envelope).
    pub const TENANT: &str = "zenvelope-tenant";
    /// Subject pseudonym (also authenticated inside the envelope): lets a subscriber pick
    /// one user's results without decoding every record.
    pub const SUBJECT: &str = "zenvelope-subject";
    /// Envelope kind symbol: `REQUEST`, `RESULT`, `ERROR` or `RECORD`.
    pub const KIND: &str = "zenvelope-kind";
    /// Message id of the envelope, hyphenated UUID.
    pub const MESSAGE_ID: &str = "zenvelope-message-id";
    /// For results: the request's message id, hyphenated UUID.
    pub const CORRELATION_ID: &str = "zenvelope-correlation-id";
    /// On DLQ records: the reason code.
    pub const REASON: &str = "zenvelope-reason";
    /// On redriven records: how many times the record was redriven from the DLQ.
    pub const REDRIVE_COUNT: &str = "zenvelope-redrive-count";
}

/// Confluent Schema Registry subject names.
///
/// Values on topics use the `TopicNameStrategy` (`<topic>-value`); the plaintexts inside
/// envelopes are not on a topic of their own and use the `RecordNameStrategy` (the
/// record's full name), so one id names the AnalysisRequest schema whichever topic its
/// envelope travels on.
pub mod subject {
    /// Subject of [`super::topic::REQUESTS`] values.
    pub const REQUESTS_VALUE: &str = "zenvelope.requests-value";
    /// Subject of [`super::topic::RESULTS`] values.
    pub const RESULTS_VALUE: &str = "zenvelope.results-value";
    /// Subject of [`super::topic::DLQ`] values.
    pub const DLQ_VALUE: &str = "zenvelope.dlq-value";
    /// Subject of [`super::topic::AUDIT`] values.
    pub const AUDIT_VALUE: &str = "zenvelope.audit-value";
    /// Subject of [`super::topic::KEYS`] values.
    pub const KEYS_VALUE: &str = "zenvelope.keys-value";
    /// Subject of [`super::topic::VAULT`] values.
    pub const VAULT_VALUE: &str = "zenvelope.vault-value";
    /// Subject of [`super::topic::USAGE`] values.
    pub const USAGE_VALUE: &str = "zenvelope.usage-value";
    /// Subject of [`super::topic::REJECTIONS`] values.
    pub const REJECTIONS_VALUE: &str = "zenvelope.rejections-value";
}

/// Media types, as carried in the envelope header's `content_type`.
pub mod media_type {
    /// Plaintext of a request envelope: an Avro `AnalysisRequest` datum.
    pub const ANALYSIS_REQUEST: &str = "application/vnd.zenvelope.analysis-request+avro";
    /// Plaintext of a result envelope: an Avro `AnalysisResult` datum.
    pub const ANALYSIS_RESULT: &str = "application/vnd.zenvelope.analysis-result+avro";
}

/// A zenvelope Kafka topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topic {
    /// [`topic::REQUESTS`].
    Requests,
    /// [`topic::RESULTS`].
    Results,
    /// [`topic::DLQ`].
    Dlq,
    /// [`topic::AUDIT`].
    Audit,
    /// [`topic::KEYS`].
    Keys,
    /// [`topic::VAULT`].
    Vault,
    /// [`topic::CHECKPOINTS`].
    Checkpoints,
    /// [`topic::USAGE`].
    Usage,
    /// [`topic::ADMITTED`].
    Admitted,
    /// [`topic::ADMISSION_BY_TENANT`].
    AdmissionByTenant,
    /// [`topic::REJECTIONS`].
    Rejections,
}

impl Topic {
    /// Every topic.
    pub const ALL: &'static [Topic] = &[
        Topic::Requests,
        Topic::Results,
        Topic::Dlq,
        Topic::Audit,
        Topic::Keys,
        Topic::Vault,
        Topic::Checkpoints,
        Topic::Usage,
        Topic::Admitted,
        Topic::AdmissionByTenant,
        Topic::Rejections,
    ];

    /// The topic's name on the broker.
    pub const fn name(self) -> &'static str {
        match self {
            Topic::Requests => topic::REQUESTS,
            Topic::Results => topic::RESULTS,
            Topic::Dlq => topic::DLQ,
            Topic::Audit => topic::AUDIT,
            Topic::Keys => topic::KEYS,
            Topic::Vault => topic::VAULT,
            Topic::Checkpoints => topic::CHECKPOINTS,
            Topic::Usage => topic::USAGE,
            Topic::Admitted => topic::ADMITTED,
            Topic::AdmissionByTenant => topic::ADMISSION_BY_TENANT,
            Topic::Rejections => topic::REJECTIONS,
        }
    }

    /// Whether the topic is log-compacted (the newest record per key is kept): the key
    /// directory, the vault and the usage counters.
    pub const fn is_compacted(self) -> bool {
        matches!(self, Topic::Keys | Topic::Vault | Topic::Usage)
    }

    /// Looks a topic up by its name.
    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.iter().copied().find(|t| t.name() == name)
    }

    /// The registry subject of the topic's values, if they are Confluent-framed Avro.
    pub const fn value_subject(self) -> Option<Subject> {
        match self {
            Topic::Requests => Some(Subject::RequestsValue),
            Topic::Results => Some(Subject::ResultsValue),
            Topic::Dlq => Some(Subject::DlqValue),
            Topic::Audit => Some(Subject::AuditValue),
            Topic::Keys => Some(Subject::KeysValue),
            Topic::Vault => Some(Subject::VaultValue),
            Topic::Usage => Some(Subject::UsageValue),
            Topic::Rejections => Some(Subject::RejectionsValue),
            // Admission forwards `zenvelope.requests` values unchanged, frame included:
            // they carry that subject's schema id.
            Topic::Checkpoints | Topic::Admitted | Topic::AdmissionByTenant => None,
        }
    }
}

impl core::fmt::Display for Topic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Schema Registry subject, and the one record type it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// [`subject::REQUESTS_VALUE`]: envelopes.
    RequestsValue,
    /// [`subject::RESULTS_VALUE`]: envelopes.
    ResultsValue,
    /// [`subject::DLQ_VALUE`]: dead letters.
    DlqValue,
    /// [`subject::AUDIT_VALUE`]: audit events.
    AuditValue,
    /// [`subject::KEYS_VALUE`]: key directory entries.
    KeysValue,
    /// [`subject::VAULT_VALUE`]: envelopes.
    VaultValue,
    /// The AnalysisRequest plaintext (record-name strategy).
    AnalysisRequest,
    /// The AnalysisResult plaintext (record-name strategy).
    AnalysisResult,
    /// [`subject::USAGE_VALUE`]: usage counters.
    UsageValue,
    /// [`subject::REJECTIONS_VALUE`]: rejection notices.
    RejectionsValue,
}

impl Subject {
    /// Every subject.
    pub const ALL: &'static [Subject] = &[
        Subject::RequestsValue,
        Subject::ResultsValue,
        Subject::DlqValue,
        Subject::AuditValue,
        Subject::KeysValue,
        Subject::VaultValue,
        Subject::AnalysisRequest,
        Subject::AnalysisResult,
        Subject::UsageValue,
        Subject::RejectionsValue,
    ];

    /// The subject's name in the registry.
    pub const fn name(self) -> &'static str {
        match self {
            Subject::RequestsValue => subject::REQUESTS_VALUE,
            Subject::ResultsValue => subject::RESULTS_VALUE,
            Subject::DlqValue => subject::DLQ_VALUE,
            Subject::AuditValue => subject::AUDIT_VALUE,
            Subject::KeysValue => subject::KEYS_VALUE,
            Subject::VaultValue => subject::VAULT_VALUE,
            Subject::AnalysisRequest => SchemaName::AnalysisRequest.full_name(),
            Subject::AnalysisResult => SchemaName::AnalysisResult.full_name(),
            Subject::UsageValue => subject::USAGE_VALUE,
            Subject::RejectionsValue => subject::REJECTIONS_VALUE,
        }
    }

    /// The topic whose values this subject describes (`None` for record-name subjects).
    pub const fn topic(self) -> Option<Topic> {
        match self {
            Subject::RequestsValue => Some(Topic::Requests),
            Subject::ResultsValue => Some(Topic::Results),
            Subject::DlqValue => Some(Topic::Dlq),
            Subject::AuditValue => Some(Topic::Audit),
            Subject::KeysValue => Some(Topic::Keys),
            Subject::VaultValue => Some(Topic::Vault),
            Subject::UsageValue => Some(Topic::Usage),
            Subject::RejectionsValue => Some(Topic::Rejections),
            Subject::AnalysisRequest | Subject::AnalysisResult => None,
        }
    }

    /// The record type registered under this subject.
    pub const fn schema(self) -> SchemaName {
        match self {
            Subject::RequestsValue | Subject::ResultsValue | Subject::VaultValue => {
                SchemaName::Envelope
            }
            Subject::DlqValue => SchemaName::DeadLetter,
            Subject::AuditValue => SchemaName::AuditEvent,
            Subject::KeysValue => SchemaName::KeyDirectoryEntry,
            Subject::AnalysisRequest => SchemaName::AnalysisRequest,
            Subject::AnalysisResult => SchemaName::AnalysisResult,
            Subject::UsageValue => SchemaName::UsageCounter,
            Subject::RejectionsValue => SchemaName::Rejection,
        }
    }
}

impl core::fmt::Display for Subject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn topic_names_are_unique_and_look_up() {
        let names: HashSet<_> = Topic::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), Topic::ALL.len());
        for t in Topic::ALL {
            assert_eq!(Topic::from_name(t.name()), Some(*t));
            assert!(t.name().starts_with("zenvelope."), "{t}");
        }
        assert_eq!(Topic::from_name("zenvelope.nope"), None);
    }

    #[test]
    fn value_subjects_follow_the_topic_name_strategy() {
        for t in Topic::ALL {
            if let Some(s) = t.value_subject() {
                assert_eq!(s.name(), format!("{}-value", t.name()));
                assert_eq!(s.topic(), Some(*t));
            }
        }
        for s in Subject::ALL {
            match s.topic() {
                Some(t) => assert_eq!(t.value_subject(), Some(*s)),
                None => assert_eq!(s.name(), s.schema().full_name()),
            }
        }
    }

    #[test]
    fn header_keys_are_unique_and_prefixed() {
        let keys = [
            header::SCHEMA_ID,
            header::TENANT,
            header::KIND,
            header::MESSAGE_ID,
            header::CORRELATION_ID,
            header::REASON,
        ];
        let unique: HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert!(keys.iter().all(|k| k.starts_with("zenvelope-")));
    }
}
