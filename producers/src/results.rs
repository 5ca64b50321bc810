//! [`Results`]: a user's answers, verified, opened and deduplicated.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use zenvelope_envelope::{Kind, Limits, UserKey};
use zenvelope_runtime::{Inbound, Subscriber, now_ms};
use zenvelope_schemas::names::{header, media_type, topic};
use zenvelope_schemas::{AnalysisResult, Rejection, SchemaId};

use crate::client::{Client, User};
use crate::error::Error;

/// Correlation ids remembered for deduplication.
const DEDUPE_WINDOW: usize = 100_000;
/// How long looking up the optional rejections topic may take.
const TOPIC_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How much older than the subscription a refusal notice may be and still be told
/// (clock skew between admission and this client). Older notices are history: a
/// subscription that is not `from_beginning` skips them.
const REFUSAL_SKEW_MS: i64 = 60_000;

/// An opened answer.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    /// The request's message id.
    pub correlation_id: String,
    /// `Kind::Result` for a model answer, `Kind::Error` when the request could not be
    /// answered (the text then says why, without echoing the request).
    pub kind: Kind,
    /// The model's output, or the error's explanation.
    pub text: String,
    /// Provider and model that answered (results only).
    pub provider: Option<(String, String)>,
    /// The caller's reference from the request, echoed (results only).
    pub client_reference: Option<String>,
}

impl std::fmt::Debug for Answer {
    /// Elides the text: it is the user's data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("correlation_id", &self.correlation_id)
            .field("kind", &self.kind)
            .field("text_len", &self.text.len())
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

/// A request the admission processor refused, from its notice on
/// `zenvelope.rejections`: ids, a reason code and a sentence, never the request's data.
///
/// Notices are not signed (admission holds no key): anyone who may write the topic could
/// forge one. Treat a refusal as the service's word; the sealed request itself waits on
/// the DLQ, where an operator can redrive it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The refused request's message id, when admission could read it.
    pub message_id: Option<String>,
    /// A short, stable code: `quota_exceeded`, `bad_signature`, `purpose_not_allowed`, ...
    pub reason_code: String,
    /// One sentence saying why.
    pub detail: String,
    /// For `quota_exceeded`: how long until the quota period ends.
    pub retry_after: Option<Duration>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Request {} was refused by admission ({}): {}",
            self.message_id.as_deref().unwrap_or("(id unreadable)"),
            self.reason_code,
            self.detail
        )?;
        if let Some(after) = self.retry_after {
            // Rounded up: "retry in 0 s" would be too early.
            write!(f, " Retry in {} s.", after.as_millis().div_ceil(1000))?;
        }
        Ok(())
    }
}

impl From<Rejection> for Refusal {
    fn from(r: Rejection) -> Self {
        Self {
            message_id: r.message_id.map(|m| m.to_string()),
            reason_code: r.reason_code,
            detail: r.reason_detail,
            retry_after: r
                .retry_after_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis),
        }
    }
}

/// A user's answers from `zenvelope.results`, in arrival order, each once; and,
/// where admission runs, its refusals of the user's requests ([`Error::Refused`]).
pub struct Results {
    client: Client,
    key: Arc<UserKey>,
    subject: String,
    subscriber: Subscriber,
    seen: Dedupe,
    limits: Limits,
    /// Refusal notices older than this (ms since the epoch) are skipped.
    refusals_since_ms: i64,
}

/// The most recent correlation ids, bounded: at most `cap` are remembered.
struct Dedupe {
    seen: HashSet<String>,
    order: VecDeque<String>,
    cap: usize,
}

impl Dedupe {
    fn new(cap: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Notes `id`; `false` if it is already remembered.
    fn insert(&mut self, id: &str) -> bool {
        if !self.seen.insert(id.to_owned()) {
            return false;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > self.cap
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

impl Results {
    pub(crate) fn new(client: Client, user: &User, from_beginning: bool) -> Result<Self, Error> {
        // A group of its own: every subscriber sees every answer of its user.
        let group = format!(
            "zenvelope-sdk-{}-{}",
            user.subject(),
            zenvelope_envelope::MessageId::new_v7()
        );
        // Refusal notices exist only where admission runs: follow them when the topic
        // does (subscribing to a missing topic is an error).
        let mut topics = vec![topic::RESULTS];
        if !zenvelope_runtime::existing_topics(
            &client.inner.kafka,
            &[topic::REJECTIONS],
            TOPIC_LOOKUP_TIMEOUT,
        )?
        .is_empty()
        {
            topics.push(topic::REJECTIONS);
        }
        let subscriber = Subscriber::new(&client.inner.kafka, &group, &topics, from_beginning)?;
        Ok(Self {
            key: user.key.clone(),
            subject: user.subject().to_owned(),
            subscriber,
            client,
            seen: Dedupe::new(DEDUPE_WINDOW),
            limits: Limits::default(),
            refusals_since_ms: if from_beginning {
                i64::MIN
            } else {
                now_ms().saturating_sub(REFUSAL_SKEW_MS)
            },
        })
    }

    /// The next answer for this user. Answers for other users are skipped by their
    /// subject header; a duplicate of an answer already returned is skipped. An answer
    /// that names this user but cannot be verified or opened is returned as
    /// [`Error::Unopenable`], and admission's refusal of one of the user's requests as
    /// [`Error::Refused`] (once per request); call `next` again to go on.
    pub async fn next(&mut self) -> Result<Answer, Error> {
        loop {
            let record = self.subscriber.recv().await?;
            if record.header(header::SUBJECT) != Some(self.subject.as_bytes()) {
                continue;
            }
            if record.topic == topic::REJECTIONS {
                if let Some(refusal) = self.refusal(&record).await? {
                    return Err(Error::Refused(Box::new(refusal)));
                }
                continue;
            }
            if let Some(id) = record.header(header::CORRELATION_ID)
                && self.seen.contains(String::from_utf8_lossy(id).as_ref())
            {
                continue;
            }
            let answer = self.open(&record).await.map_err(|e| Error::Unopenable {
                topic: record.topic.clone(),
                offset: record.offset,
                source: Box::new(e),
            })?;
            if !self.seen.insert(&answer.correlation_id) {
                continue;
            }
            return Ok(answer);
        }
    }

    /// The answer to the request `message_id`, or its refusal as [`Error::Refused`].
    /// Answers and refusals of the user's other requests are skipped (and not returned
    /// later); other errors are returned as [`Results::next`] returns them.
    pub async fn outcome_of(&mut self, message_id: &str) -> Result<Answer, Error> {
        loop {
            match self.next().await {
                Ok(answer) if answer.correlation_id == message_id => return Ok(answer),
                Err(Error::Refused(refusal))
                    if refusal.message_id.as_deref() == Some(message_id) =>
                {
                    return Err(Error::Refused(refusal));
                }
                Ok(_) | Err(Error::Refused(_)) => {}
                Err(other) => return Err(other),
            }
        }
    }

    /// The refusal a notice tells, unless one for the same request was returned before.
    /// Notices are not authenticated: one that does not decode is logged and skipped, so
    /// a forged record cannot end a wait for a real answer.
    async fn refusal(&mut self, record: &Inbound) -> Result<Option<Refusal>, Error> {
        let notice: Rejection = match self.client.inner.codec.decode(&record.payload).await {
            Ok(notice) => notice,
            Err(error) => {
                tracing::warn!(
                    topic = %record.topic,
                    partition = record.partition,
                    offset = record.offset,
                    %error,
                    "Skipping a rejection notice that does not decode."
                );
                return Ok(None);
            }
        };
        if notice.subject.as_deref() != Some(self.subject.as_str())
            || notice.rejected_at_ms < self.refusals_since_ms
        {
            return Ok(None);
        }
        let refusal = Refusal::from(notice);
        // Admission may tell a refusal more than once (a retried or redriven request);
        // the namespace keeps a refusal from hiding a later answer to the same request.
        if let Some(id) = &refusal.message_id
            && !self.seen.insert(&format!("refused:{id}"))
        {
            return Ok(None);
        }
        Ok(Some(refusal))
    }

    async fn open(&self, record: &Inbound) -> Result<Answer, Error> {
        let inner = &self.client.inner;
        let envelope = inner
            .codec
            .decode_envelope(&record.payload, &self.limits)
            .await?;
        let opened = inner.results_opener().open(envelope, &*self.key)?;
        let header = opened.header().clone();
        if header.subject != self.subject || !header.kind.is_response() {
            return Err(Error::Envelope(zenvelope_envelope::Error::InvalidInput(
                "not an answer for this user",
            )));
        }
        let correlation_id =
            header
                .correlation_id
                .map(|c| c.to_string())
                .ok_or(Error::Envelope(zenvelope_envelope::Error::InvalidInput(
                    "an answer without a correlation id",
                )))?;
        if header.content_type == media_type::ANALYSIS_RESULT {
            let id = u32::try_from(header.schema_id).map_err(|_| {
                Error::Envelope(zenvelope_envelope::Error::InvalidInput("bad schema id"))
            })?;
            let result: AnalysisResult = inner
                .codec
                .decode_datum(SchemaId::new(id), opened.plaintext())
                .await?;
            Ok(Answer {
                correlation_id,
                kind: header.kind,
                text: result.output,
                provider: Some((result.provider, result.model)),
                client_reference: result.client_reference,
            })
        } else {
            Ok(Answer {
                correlation_id,
                kind: header.kind,
                text: String::from_utf8_lossy(opened.plaintext()).into_owned(),
                provider: None,
                client_reference: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Dedupe;

    #[test]
    fn dedupe_remembers_the_most_recent_ids_only() {
        let mut d = Dedupe::new(2);
        assert!(d.insert("a"));
        assert!(!d.insert("a"), "a duplicate");
        assert!(d.insert("b"));
        assert!(d.insert("c"), "evicts a");
        assert!(d.contains("b") && d.contains("c"));
        assert!(!d.contains("a"));
        assert!(d.insert("a"), "forgotten, so new again");
    }
}
