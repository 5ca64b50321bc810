//! Egress allowlist.

use std::net::IpAddr;

use zenvelope_enclave_protocol::{
    DEFAULT_EGRESS_PORT, Destination, EgressHost, EgressPolicy, Error,
};

fn policy() -> EgressPolicy {
    EgressPolicy::from_entries([
        "api.openai.com",
        "kms.us-east-1.amazonaws.com:443",
        "models.example.org:8443",
        "10.0.0.5:443",
        "[2001:db8::1]:443",
    ])
    .unwrap()
}

fn denied(r: Result<Destination, Error>) -> bool {
    matches!(r, Err(Error::EgressDenied { .. }))
}

#[test]
fn exact_names_and_ports_are_allowed() {
    let p = policy();
    let d = p.check("api.openai.com", 443).unwrap();
    assert_eq!(d.host, EgressHost::Name("api.openai.com".into()));
    assert_eq!(d.port, DEFAULT_EGRESS_PORT);
    assert!(p.check("kms.us-east-1.amazonaws.com", 443).is_ok());
    assert!(p.check("models.example.org", 8443).is_ok());
}

#[test]
fn case_and_one_trailing_dot_are_normalised() {
    let p = policy();
    assert_eq!(
        p.check("API.OpenAI.com.", 443).unwrap().to_string(),
        "api.openai.com:443"
    );
    assert!(matches!(
        p.check("api.openai.com..", 443),
        Err(Error::InvalidPolicyEntry { .. })
    ));
}

#[test]
fn other_ports_names_and_suffixes_are_denied() {
    let p = policy();
    assert!(denied(p.check("api.openai.com", 80)));
    assert!(
        denied(p.check("api.openai.com", 8443)),
        "no port in the entry means 443 only"
    );
    assert!(denied(p.check("models.example.org", 443)));
    assert!(
        denied(p.check("evil.api.openai.com", 443)),
        "no implicit subdomains"
    );
    assert!(denied(p.check("openai.com", 443)));
    assert!(denied(p.check("api.openai.com.evil.net", 443)));
    assert!(denied(
        EgressPolicy::deny_all().check("api.openai.com", 443)
    ));
}

#[test]
fn ip_literals_only_when_listed() {
    let p = policy();
    assert!(p.check("10.0.0.5", 443).is_ok());
    assert!(denied(p.check("10.0.0.5", 80)));
    assert!(denied(p.check("10.0.0.6", 443)));
    assert!(denied(p.check("127.0.0.1", 443)));
    assert!(denied(p.check("169.254.169.254", 80)));
    assert!(p.check("2001:db8::1", 443).is_ok());
    assert!(denied(p.check("::1", 443)));
    assert!(
        denied(p.check("::ffff:10.0.0.5", 443)),
        "a mapped address is a different literal"
    );
    let ip: IpAddr = "10.0.0.5".parse().unwrap();
    assert_eq!(p.check("10.0.0.5", 443).unwrap().host, EgressHost::Ip(ip));
}

#[test]
fn numeric_and_malformed_hosts_are_invalid() {
    let p = policy();
    for host in [
        "127.1",
        "0x7f.1",
        "2130706433",
        "010.0.0.5",
        "",
        "a..b",
        "-a.com",
        "a-.com",
        "a_b.com",
        "a b.com",
        "[::1]",
        "xn--nxasmq6b.com\u{0}",
        "ünicode.com",
        &"a".repeat(64),
        &format!("{}.com", "a.".repeat(126)),
    ] {
        assert!(
            matches!(p.check(host, 443), Err(Error::InvalidPolicyEntry { .. })),
            "{host:?}"
        );
    }
    // Punycode and digits inside names are fine.
    assert!(denied(p.check("xn--nxasmq6b.com", 443)));
    assert!(denied(p.check("s3.amazonaws.com", 443)));
}

#[test]
fn entries_parse_strictly() {
    for entry in [
        "*.amazonaws.com",
        "host:",
        "host:0",
        "host:65536",
        "host:+1",
        "host:44x",
        "::1",
        "[::1",
        "[::1]x",
        "[zz]:1",
        "a:b:c",
        "",
        "1.2.3.4.5",
    ] {
        assert!(
            matches!(
                EgressPolicy::from_entries([entry]),
                Err(Error::InvalidPolicyEntry { .. })
            ),
            "{entry:?}"
        );
    }
    let p = EgressPolicy::from_entries(["Example.COM.:8080", "[::1]"]).unwrap();
    let listed: Vec<String> = p.destinations().map(ToString::to_string).collect();
    assert_eq!(listed, ["example.com:8080", "[::1]:443"]);
}

#[test]
fn denial_message_names_destination_only() {
    let e = policy().check("exfil.example.net", 443).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Egress to exfil.example.net:443 is not allowed by the egress policy."
    );
}
