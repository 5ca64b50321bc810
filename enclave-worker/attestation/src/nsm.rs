//! The production attestor: the Nitro Secure Module behind `/dev/nsm`.
//!
//! This only works inside a Nitro Enclave. Its test runs when `ZENVELOPE_NSM_TEST=1`.

use std::sync::Mutex;

use aws_nitro_enclaves_nsm_api::api::{Request, Response};
use aws_nitro_enclaves_nsm_api::driver;
use serde_bytes::ByteBuf;

use crate::{AttestationRequest, Attestor, Error};

/// Obtains attestation documents from the Nitro Secure Module.
#[derive(Debug)]
pub struct NsmAttestor {
    /// The open `/dev/nsm` descriptor; requests are serialised through the mutex.
    fd: Mutex<i32>,
}

impl NsmAttestor {
    /// Opens `/dev/nsm`. Fails with [`Error::NsmUnavailable`] outside a Nitro Enclave.
    pub fn open() -> Result<Self, Error> {
        let fd = driver::nsm_init();
        if fd < 0 {
            return Err(Error::NsmUnavailable);
        }
        Ok(Self { fd: Mutex::new(fd) })
    }
}

impl Attestor for NsmAttestor {
    fn attest(&self, request: &AttestationRequest) -> Result<Vec<u8>, Error> {
        request.check()?;
        let req = Request::Attestation {
            user_data: request.user_data.clone().map(ByteBuf::from),
            nonce: request.nonce.clone().map(ByteBuf::from),
            public_key: request.public_key.clone().map(ByteBuf::from),
        };
        // A poisoned lock only means another request panicked; the descriptor is fine.
        let fd = *self.fd.lock().unwrap_or_else(|p| p.into_inner());
        match driver::nsm_process_request(fd, req) {
            Response::Attestation { document } => Ok(document),
            Response::Error(code) => Err(Error::Nsm {
                code: format!("{code:?}"),
            }),
            _ => Err(Error::Nsm {
                code: "unexpected response".to_owned(),
            }),
        }
    }
}

impl Drop for NsmAttestor {
    fn drop(&mut self) {
        let fd = *self.fd.get_mut().unwrap_or_else(|p| p.into_inner());
        driver::nsm_exit(fd);
    }
}
