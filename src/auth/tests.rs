//! Tests for the password check and SCRAM-SHA-256, with RFC 7677's test vector.

use super::*;
use proptest::prelude::*;

// RFC 7677 section 3: user "user", password "pencil".
const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT_BASE64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_salt() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(RFC_SALT_BASE64)
        .unwrap()
}

fn rfc_server() -> ScramSha256Authenticator {
    let mut users = ScramUserStore::new();
    users.insert(
        "user",
        ScramCredentials::from_password("pencil", &rfc_salt(), 4096).unwrap(),
    );
    ScramSha256Authenticator::new(users).unwrap()
}

/// Runs start with the RFC server nonce and returns server-first and the state.
fn rfc_server_first(
    server: &ScramSha256Authenticator,
    client_first: &[u8],
) -> (Vec<u8>, AuthState) {
    match server.start_with_nonce(Some(client_first), RFC_SERVER_NONCE) {
        AuthStep::Continue { data, state } => (data, state),
        other => panic!("expected Continue, got {other:?}"),
    }
}

fn expect_failure(step: AuthStep) -> ReasonCode {
    match step {
        AuthStep::Failure(reason) => reason,
        other => panic!("expected Failure, got {other:?}"),
    }
}

#[test]
fn rfc7677_server_side() {
    let server = rfc_server();
    assert_eq!(server.method(), "SCRAM-SHA-256");
    let (server_first, state) = rfc_server_first(&server, RFC_CLIENT_FIRST.as_bytes());
    assert_eq!(
        std::str::from_utf8(&server_first).unwrap(),
        RFC_SERVER_FIRST
    );
    match server.continue_auth(state, Some(RFC_CLIENT_FINAL.as_bytes())) {
        AuthStep::Success { data, username } => {
            assert_eq!(data.as_deref(), Some(RFC_SERVER_FINAL.as_bytes()));
            assert_eq!(username, "user");
        }
        other => panic!("expected Success, got {other:?}"),
    }
}

#[test]
fn rfc7677_client_side() {
    let client = ScramClient::with_nonce("user", "pencil", RFC_CLIENT_NONCE);
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let (client_final, verifier) = client
        .handle_server_first(Some(RFC_SERVER_FIRST.as_bytes()))
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&client_final).unwrap(),
        RFC_CLIENT_FINAL
    );
    verifier
        .verify_server_final(Some(RFC_SERVER_FINAL.as_bytes()))
        .unwrap();
    let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_eq!(
        verifier.verify_server_final(Some(forged.as_bytes())),
        Err(ScramError::InvalidProof)
    );
    assert_eq!(
        verifier.verify_server_final(Some(b"e=invalid-proof")),
        Err(ScramError::ServerError)
    );
}

#[test]
fn rfc7677_stored_credentials() {
    use base64::Engine;
    let credentials = ScramCredentials::from_password("pencil", &rfc_salt(), 4096).unwrap();
    assert_eq!(credentials.iterations, 4096);
    // RFC 5802 stores StoredKey and ServerKey only; check they are the ones the proof needs by
    // running the client against a server built from them (above), and that the keys differ.
    assert_ne!(credentials.stored_key, credentials.server_key);
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials.stored_key);
    assert_eq!(encoded.len(), 44);
}

/// A full exchange between our client and our server with random nonces and salts.
fn run_exchange(
    server: &ScramSha256Authenticator,
    username: &str,
    password: &str,
) -> Result<String, ReasonCode> {
    let client = ScramClient::new(username, password).unwrap();
    let (server_first, state) = match server.start("client-1", Some(&client.client_first())) {
        AuthStep::Continue { data, state } => (data, state),
        AuthStep::Failure(reason) => return Err(reason),
        other => panic!("unexpected {other:?}"),
    };
    let (client_final, verifier) = client.handle_server_first(Some(&server_first)).unwrap();
    match server.continue_auth(state, Some(&client_final)) {
        AuthStep::Success { data, username } => {
            verifier.verify_server_final(data.as_deref()).unwrap();
            Ok(username)
        }
        AuthStep::Failure(reason) => Err(reason),
        other => panic!("unexpected {other:?}"),
    }
}

/// A server from a `--scram-users` file of stored keys, as `shardmq-passwd --scram` writes it.
fn generated_server() -> ScramSha256Authenticator {
    let line = |user: &str, password: &str| {
        let credentials = ScramCredentials::generate(password, SCRAM_ITERATIONS_DEFAULT).unwrap();
        format!("{user}:{}\n", encode_scram_credentials(&credentials))
    };
    let text = line("alice", "wonder land") + &line("bob=,x", "s3cr:et");
    assert!(!text.contains("wonder"), "the file holds no password");
    let users = parse_scram_file(&text).unwrap();
    assert_eq!(users.len(), 2);
    ScramSha256Authenticator::new(users).unwrap()
}

#[test]
fn scram_file_round_trip_and_errors() {
    let credentials = ScramCredentials::from_password("pencil", &rfc_salt(), 4096).unwrap();
    let encoded = encode_scram_credentials(&credentials);
    assert!(encoded.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"));
    assert_eq!(parse_scram_credentials(&encoded), Ok(credentials));
    for (bad, line) in [
        ("alice:pencil\n", 1),
        ("# c\nalice:SCRAM-SHA-256$4096:AAAA$AAAA\n", 2),
        ("alice:SCRAM-SHA-256$10:AAAA$AAAA:AAAA\n", 1),
    ] {
        match parse_scram_file(bad) {
            Err(PasswordFileError::Line { line: got, .. }) => assert_eq!(got, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let plain = parse_scram_file("alice:pencil\n").unwrap_err().to_string();
    assert!(plain.contains("shardmq-passwd --scram"), "{plain}");
}

#[test]
fn scram_round_trip_and_wrong_password() {
    let server = generated_server();
    assert_eq!(
        run_exchange(&server, "alice", "wonder land"),
        Ok("alice".into())
    );
    // A user name with ',' and '=' goes through saslname escaping.
    assert_eq!(
        run_exchange(&server, "bob=,x", "s3cr:et"),
        Ok("bob=,x".into())
    );
    assert_eq!(
        run_exchange(&server, "alice", "wonderland"),
        Err(ReasonCode::BadUserNameOrPassword)
    );
    // An unknown user runs to the end and fails the same way.
    assert_eq!(
        run_exchange(&server, "mallory", "x"),
        Err(ReasonCode::BadUserNameOrPassword)
    );
}

#[test]
fn unknown_user_gets_a_stable_decoy_salt() {
    let server = generated_server();
    let first = |nonce| match server.start_with_nonce(Some(b"n,,n=nobody,r=abc"), nonce) {
        AuthStep::Continue { data, .. } => String::from_utf8(data).unwrap(),
        other => panic!("unexpected {other:?}"),
    };
    let (a, b) = (first("x1"), first("x2"));
    assert_eq!(a.split(',').nth(1), b.split(',').nth(1));
    assert!(a.ends_with(",i=4096"));
}

#[test]
fn reauthentication_starts_again_after_success() {
    let server = generated_server();
    for _ in 0..3 {
        // Each AUTH 0x19 is a fresh start; the old state was consumed by the last success.
        assert_eq!(
            run_exchange(&server, "alice", "wonder land"),
            Ok("alice".into())
        );
    }
    // A failed re-authentication does not affect the next one.
    assert!(run_exchange(&server, "alice", "nope").is_err());
    assert_eq!(
        run_exchange(&server, "alice", "wonder land"),
        Ok("alice".into())
    );
}

#[test]
fn malformed_client_first_fails_without_panic() {
    let server = rfc_server();
    let cases: &[&[u8]] = &[
        b"",
        b"n",
        b"n,",
        b"x,,n=user,r=abc",
        b"p=tls-unique,,n=user,r=abc",
        b"n,a=admin,n=user,r=abc",
        b"n,,r=abc",
        b"n,,n=user",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",
        b"n,,n=us=2,r=abc",
        b"n,,n=user,r=",
        b"n,,n=user,r=a b",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=user,x=abc",
        b"\xff\xfe",
    ];
    for &case in cases {
        let reason = expect_failure(server.start_with_nonce(Some(case), RFC_SERVER_NONCE));
        assert_eq!(reason, ReasonCode::NotAuthorized, "{case:?}");
    }
    assert_eq!(
        expect_failure(server.start("c", None)),
        ReasonCode::NotAuthorized
    );
    let too_long = format!("n,,n=user,r={}", "a".repeat(SCRAM_MESSAGE_LEN_MAX));
    expect_failure(server.start("c", Some(too_long.as_bytes())));
    let long_user = format!("n,,n={},r=abc", "u".repeat(SCRAM_USERNAME_LEN_MAX + 1));
    expect_failure(server.start("c", Some(long_user.as_bytes())));
}

#[test]
fn malformed_client_final_fails_without_panic() {
    let server = rfc_server();
    let nonce = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    let cases = [
        String::new(),
        "c=biws".to_owned(),
        format!("c=biws,r={nonce}"),
        format!("c=biws,r={nonce},p="),
        format!("c=biws,r={nonce},p=!!!"),
        format!("c=biws,r={nonce},p=AAAA"),
        format!("c=eSws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("c=biws,r={RFC_CLIENT_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
        format!("r={nonce},c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
    ];
    for case in &cases {
        let (_, state) = rfc_server_first(&server, RFC_CLIENT_FIRST.as_bytes());
        let reason = expect_failure(server.continue_auth(state, Some(case.as_bytes())));
        assert_eq!(reason, ReasonCode::NotAuthorized, "{case:?}");
    }
    // A flipped proof bit is a wrong password, not a malformed message.
    let (_, state) = rfc_server_first(&server, RFC_CLIENT_FIRST.as_bytes());
    let wrong = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    assert_eq!(
        expect_failure(server.continue_auth(state, Some(wrong.as_bytes()))),
        ReasonCode::BadUserNameOrPassword
    );
    // No data, and a state from another authenticator.
    let (_, state) = rfc_server_first(&server, RFC_CLIENT_FIRST.as_bytes());
    expect_failure(server.continue_auth(state, None));
    expect_failure(server.continue_auth(AuthState::new(5u8), Some(RFC_CLIENT_FINAL.as_bytes())));
}

#[test]
fn client_rejects_bad_server_first() {
    let cases: &[&[u8]] = &[
        b"",
        b"r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=!!,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4294967295",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-5",
        b"r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",
        b"m=x,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    ];
    for &case in cases {
        let client = ScramClient::with_nonce("user", "pencil", RFC_CLIENT_NONCE);
        assert!(client.handle_server_first(Some(case)).is_err(), "{case:?}");
    }
}

#[test]
fn authenticators_find_by_method() {
    let mut methods = Authenticators::new();
    assert!(methods.is_empty());
    assert!(methods.find(SCRAM_SHA_256).is_none());
    methods.add(Box::new(rfc_server()));
    assert_eq!(
        methods.find("SCRAM-SHA-256").map(|a| a.method()),
        Some(SCRAM_SHA_256)
    );
    assert!(methods.find("SCRAM-SHA-1").is_none());
}

/// Written by Debian's `mosquitto_passwd` 2.0.11: `mosquitto_passwd -c -b FILE alice secret`.
const MOSQUITTO_7: &str = "alice:$7$101$EDIZmZdZvqUL4TPh$lTLLgta8qHD1ywXk3qrLV0SSAicqcpj3wvNaN6r5\
wM5ahOJZimRpfsHDxPRx55jSx8lUEqtFVyrzC6FRCAnqaA==";

#[test]
fn mosquitto_pbkdf2_line_verifies() {
    let entries = parse_password_file(MOSQUITTO_7).unwrap();
    assert_eq!(entries[0].username, "alice");
    assert!(entries[0].hash.matches(b"secret"));
    assert!(!entries[0].hash.matches(b"Secret"));
    // Re-encoding gives the line back byte for byte.
    assert_eq!(format!("alice:{}", entries[0].hash.encode()), MOSQUITTO_7);
}

#[test]
fn sha512_format_is_password_then_salt() {
    use sha2::{Digest, Sha512};
    let salt = b"0123456789ab";
    let hash = PasswordHash::sha512(b"pw", salt);
    let expected: [u8; 64] = Sha512::digest(b"pw0123456789ab").into();
    assert_eq!(
        hash,
        PasswordHash::Sha512 {
            salt: salt.to_vec(),
            hash: expected
        }
    );
    let parsed = PasswordHash::parse(&hash.encode()).unwrap();
    assert!(parsed.matches(b"pw"));
    assert!(hash.encode().starts_with("$6$MDEyMzQ1Njc4OWFi$"));
}

#[test]
fn password_file_errors_name_the_line() {
    let plain = parse_password_file("# c\nalice:secret\n").unwrap_err();
    assert!(matches!(plain, PasswordFileError::Line { line: 2, .. }));
    assert!(plain.to_string().contains("shardmq-passwd -U"), "{plain}");
    let good = "bob:$7$101$AAAAAAAAAAAAAAAA$".to_string() + &"A".repeat(86) + "==";
    assert!(parse_password_file(&good).is_ok());
    for (bad, line) in [
        ("alice\n".to_string(), 1),
        (format!("{good}\n:nouser\n"), 2),
        (format!("{good}\n{good}\n"), 2),
        ("a:$7$x$AAAA$AAAA\n".into(), 1),
        ("a:$7$0$AAAA$AAAA\n".into(), 1),
        ("a:$7$101$AAAA$AAAA\n".into(), 1),
        ("a:$5$AAAA$AAAA\n".into(), 1),
        ("a:$6$AAAA\n".into(), 1),
    ] {
        match parse_password_file(&bad) {
            Err(PasswordFileError::Line { line: got, .. }) => assert_eq!(got, line, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn password_check() {
    let hash = PasswordHash::pbkdf2(b"secret", b"salt", 5).encode();
    let empty = PasswordHash::pbkdf2(b"", b"salt", 5).encode();
    let auth = PasswordAuthenticator::from_text(&format!("alice:{hash}\ncarol:{empty}\n")).unwrap();
    assert_eq!(auth.len(), 2);
    assert_eq!(auth.check(Some("alice"), Some(b"secret")), Ok(()));
    assert_eq!(auth.check(Some("carol"), Some(b"")), Ok(()));
    let bad = Err(PasswordRefusal::BadPassword);
    assert_eq!(auth.check(Some("alice"), Some(b"Secret")), bad);
    // (HMAC pads keys with zeros, so PBKDF2 accepts "secret\0" too; Mosquitto, which hashes
    // strlen() bytes, cannot tell them apart either.)
    assert_eq!(auth.check(Some("alice"), Some(b"secre")), bad);
    assert_eq!(auth.check(Some("alice"), None), bad);
    let unknown = Err(PasswordRefusal::UnknownUser);
    assert_eq!(auth.check(Some("mallory"), Some(b"secret")), unknown);
    assert_eq!(auth.check(None, Some(b"secret")), unknown);
    assert_eq!(auth.check(None, None), unknown);
}

#[test]
fn password_file_from_disk() {
    let path = std::env::temp_dir().join(format!("shardmq-passwd-{}", std::process::id()));
    std::fs::write(&path, format!("{MOSQUITTO_7}\n")).unwrap();
    let auth = PasswordAuthenticator::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(auth.check(Some("alice"), Some(b"secret")), Ok(()));
    assert!(matches!(
        PasswordAuthenticator::from_file(&path),
        Err(PasswordFileError::Io(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary bytes as any SCRAM message never panic and never authenticate.
    #[test]
    fn scram_server_survives_garbage(first in prop::collection::vec(any::<u8>(), 0..80),
                                     last in prop::collection::vec(any::<u8>(), 0..80)) {
        let server = rfc_server();
        if let AuthStep::Continue { state, .. } = server.start_with_nonce(Some(&first), "srv") {
            let step = server.continue_auth(state, Some(&last));
            prop_assert!(matches!(step, AuthStep::Failure(_)));
        }
        let (_, state) = rfc_server_first(&server, RFC_CLIENT_FIRST.as_bytes());
        let step = server.continue_auth(state, Some(&last));
        prop_assert!(matches!(step, AuthStep::Failure(_)));
        let client = ScramClient::with_nonce("user", "pencil", RFC_CLIENT_NONCE);
        let _ = client.handle_server_first(Some(&first));
    }

    /// Text shaped like SCRAM messages, from SCRAM's own characters, never panics either.
    #[test]
    fn scram_server_survives_near_misses(first in "[nyp,=ar0-9A-Z]{0,40}",
                                          last in "[cbiwsrp,=A-Z0-9+/]{0,60}") {
        let server = rfc_server();
        let step = server.start_with_nonce(Some(first.as_bytes()), "srv");
        if let AuthStep::Continue { state, .. } = step {
            let step = server.continue_auth(state, Some(last.as_bytes()));
            prop_assert!(matches!(step, AuthStep::Failure(_)));
        }
    }
}
