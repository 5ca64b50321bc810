//! [`CachingUnwrapper`]: a [`DekUnwrapper`] over the fleet keyring that remembers the DEKs
//! it unwrapped.
//!
//! Producers reuse one DEK over a bounded DEK session (many messages, one wrapped key),
//! so the enclave sees the same wrapped key again and again; every repeat would cost an
//! RSA private-key operation. The cache is keyed by SHA-256 over the recipient's key id,
//! key version and wrapped key (length-prefixed), never by anything secret, and holds the
//! [`Dek`] itself, which zeroizes on drop: an evicted DEK is wiped at once.
//!
//! A hit returns the same DEK the RSA unwrap would: the wrapped key bytes are the whole
//! input of that unwrap (OAEP with an empty label; the tenant plays no part). The payload
//! key, key commitment and AEAD check still run per message.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::digest;
use zenvelope_envelope::{Dek, DekUnwrapper, Error, FleetPrivateKey, Keyring, Recipient};

use super::cache::BoundedCache;
use super::telemetry::DekCacheLookup;

/// Counters of a [`CachingUnwrapper`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DekCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// RSA unwraps performed (lookups that missed).
    pub unwraps: u64,
    /// DEKs held now.
    pub entries: usize,
}

/// The fleet keyring with a bounded cache of unwrapped DEKs in front of it.
pub struct CachingUnwrapper {
    inner: Keyring<FleetPrivateKey>,
    cache: Mutex<BoundedCache<[u8; 32], Dek>>,
    hits: AtomicU64,
    unwraps: AtomicU64,
}

impl CachingUnwrapper {
    /// Caches up to `max_entries` DEKs unwrapped with `fleet` (0 disables the cache).
    pub fn new(fleet: Keyring<FleetPrivateKey>, max_entries: usize) -> Self {
        Self {
            inner: fleet,
            cache: Mutex::new(BoundedCache::new(max_entries, max_entries)),
            hits: AtomicU64::new(0),
            unwraps: AtomicU64::new(0),
        }
    }

    /// The fleet keyring.
    pub fn keyring(&self) -> &Keyring<FleetPrivateKey> {
        &self.inner
    }

    /// Hits, unwraps and current size.
    pub fn stats(&self) -> DekCacheStats {
        DekCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            unwraps: self.unwraps.load(Ordering::Relaxed),
            entries: self.lock().len(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BoundedCache<[u8; 32], Dek>> {
        // A panic while holding the lock leaves the cache consistent (each operation
        // completes or does nothing), so a poisoned lock is still usable.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// SHA-256 over `u32be(len) || key id || i32be(version) || u32be(len) || wrapped key`.
fn cache_key(r: &Recipient) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"zenvelope/enclave/dek-cache/v1");
    ctx.update(
        &u32::try_from(r.key_id.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    ctx.update(r.key_id.as_bytes());
    ctx.update(&r.key_version.to_be_bytes());
    ctx.update(
        &u32::try_from(r.wrapped_key.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    ctx.update(&r.wrapped_key);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl DekUnwrapper for CachingUnwrapper {
    fn holds(&self, recipient: &Recipient) -> bool {
        self.inner.holds(recipient)
    }

    fn unwrap_dek(&self, recipient: &Recipient, tenant: &str) -> Result<Dek, Error> {
        if !self.inner.holds(recipient) || !recipient.params.is_empty() {
            return Err(Error::DecryptFailed);
        }
        let key = cache_key(recipient);
        if let Some(dek) = self.lock().get(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            DekCacheLookup { hit: true }.emit();
            return Ok(dek.clone());
        }
        DekCacheLookup { hit: false }.emit();
        self.unwraps.fetch_add(1, Ordering::Relaxed);
        let dek = self.inner.unwrap_dek(recipient, tenant)?;
        self.lock().insert(key, dek.clone(), 1);
        Ok(dek)
    }
}
