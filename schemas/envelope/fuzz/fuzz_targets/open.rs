//! Fuzzes the whole open path (decode, signature policy, unwrap, commitment, AEAD) with a
//! fixed fleet key and user key: it must never panic, whatever the bytes.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use zenvelope_envelope::{FleetPrivateKey, Keyring, Opener, Passphrase, UserKey};

struct Keys {
    fleet: Keyring<FleetPrivateKey>,
    user: Arc<UserKey>,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| Keys {
        fleet: Keyring::new().with(FleetPrivateKey::generate("fleet", 1, 2048).expect("key")).expect("ring"),
        user: Arc::new(UserKey::derive_with_iterations("t", "u@example.com", &Passphrase::new("p"), 100_000).expect("key")),
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let opener = Opener::new(Keyring::new()).accept_unsigned();
    let _ = opener.decode_and_open(data, &k.fleet);
    let _ = opener.decode_and_open(data, &*k.user);
});
