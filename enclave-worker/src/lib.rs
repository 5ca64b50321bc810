//! The enclave worker: `enclave-host` and `enclave-app`.
//!
//! Status: skeleton. Issue 3 fills it with the host⇄enclave frame protocol, the host that
//! bridges Kafka and the enclave, and the enclave application that obtains attestation,
//! releases the fleet keys through KMS, opens requests with
//! [`zenvelope-envelope`](../zenvelope_envelope/index.html), calls the model and seals the answer.

pub mod kms;
pub mod providers;
pub mod transport;
