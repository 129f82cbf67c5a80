//! Image references: the grammar (`nginx:1.27`, `ghcr.io/acme/api@sha256:…`)
//! and the canonical name tankd gives an image (`nginx:1.27` →
//! `docker.io/library/nginx:1.27`).
//!
//! [`check`] is the grammar of the distribution project (what the docker
//! tools and registries accept), with its limits, and says precisely what
//! is wrong: `[host[:port]/]component[/component…][:tag][@digest]`, path
//! components `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the whole name (registry
//! host included, as normalized) at most 255 characters, a tag
//! `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, a digest `sha256:` + 64 (`sha384:`
//! 96, `sha512:` 128) lowercase hex digits. The spec checks image
//! references with it (so what could never be pulled is refused at Apply,
//! by tankd and tankctl alike). [`normalize`] is Docker's normalization
//! (Docker Hub's `docker.io`, its `library/` namespace, the `latest` tag):
//! tankd names images so (it pulls with oci-spec's parser of the same
//! grammar, which agrees: `tankd::image::reference` tests that), and
//! tankctl matches a pull's progress signals by it.
//!
//! Pure functions over text; no registry, no system access.

/// The longest repository name, registry host included.
pub const MAX_NAME_LEN: usize = 255;
/// The longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// Why a text is not an image reference.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("must not be empty")]
    Empty,
    #[error("it contains whitespace or control characters")]
    Whitespace,
    #[error("no repository name")]
    NoName,
    #[error("the repository name must be lowercase")]
    Uppercase,
    #[error(
        "{0:?} is not a registry host: letters, digits, '-' and '.' (not at the ends of a \
         label), then an optional :port"
    )]
    Host(String),
    #[error(
        "path component {0:?} is not valid: lowercase letters and digits, separated by one \
         '.', '_' or '__', or by dashes"
    )]
    Component(String),
    #[error(
        "tag {0:?} is not valid: letters, digits, '_', '.' and '-', not starting with '.' or \
         '-', at most {MAX_TAG_LEN} characters"
    )]
    Tag(String),
    #[error(
        "digest {0:?} is not valid: sha256: and 64 lowercase hex digits (sha384: 96, \
         sha512: 128)"
    )]
    Digest(String),
    #[error(
        "the repository name is {0} characters long with its registry: at most {MAX_NAME_LEN}"
    )]
    TooLong(usize),
}

/// At most 64 characters of `text`, for a message.
fn shown(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Checks `text` against the distribution grammar and its limits.
pub fn check(text: &str) -> Result<(), ReferenceError> {
    if text.is_empty() {
        return Err(ReferenceError::Empty);
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ReferenceError::Whitespace);
    }
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    // A tag is a ':' after the last '/'; an earlier one is a registry port.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if name.is_empty() {
        return Err(ReferenceError::NoName);
    }
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    // A leading registry host ("ghcr.io/", "localhost:5000/") may have any case.
    let (host, path) = match name.split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => {
            (Some(host), path)
        }
        _ => (None, name),
    };
    if let Some(host) = host {
        check_host(host)?;
    }
    if path.is_empty() {
        return Err(ReferenceError::NoName);
    }
    if path.chars().any(char::is_uppercase) {
        return Err(ReferenceError::Uppercase);
    }
    for component in path.split('/') {
        check_component(component)?;
    }
    let len = match host {
        Some("index.docker.io") => "docker.io/".len() + path.len(),
        Some(host) => host.len() + 1 + path.len(),
        None if path.contains('/') => "docker.io/".len() + path.len(),
        None => "docker.io/library/".len() + path.len(),
    };
    if len > MAX_NAME_LEN {
        return Err(ReferenceError::TooLong(len));
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_component(component: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::Component(shown(component));
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return Err(invalid());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let valid = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !valid {
            return Err(invalid());
        }
    }
    Ok(())
}

/// `label(.label)*(:port)?`, a label `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`.
fn check_host(host: &str) -> Result<(), ReferenceError> {
    let invalid = || ReferenceError::Host(shown(host));
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
    }
    let label_ok = |label: &str| {
        let b = label.as_bytes();
        b.first().is_some_and(u8::is_ascii_alphanumeric)
            && b.last().is_some_and(u8::is_ascii_alphanumeric)
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    };
    if name.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let b = tag.as_bytes();
    let valid = b.len() <= MAX_TAG_LEN
        && b.first().is_some_and(word)
        && b.iter().all(|c| word(c) || *c == b'.' || *c == b'-');
    if valid {
        Ok(())
    } else {
        Err(ReferenceError::Tag(shown(tag)))
    }
}

/// `sha256:<64 hex>`, `sha384:<96 hex>`, `sha512:<128 hex>`, lowercase.
fn check_digest(digest: &str) -> Result<(), ReferenceError> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => (hex.len() == 64).then_some(hex),
        Some(("sha384", hex)) => (hex.len() == 96).then_some(hex),
        Some(("sha512", hex)) => (hex.len() == 128).then_some(hex),
        _ => None,
    };
    match hex_len {
        Some(hex) if hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => Ok(()),
        _ => Err(ReferenceError::Digest(shown(digest))),
    }
}

/// Docker Hub's registry host in canonical names.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy host, the same registry.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";

/// The canonical text of `text` (`busybox` → `docker.io/library/busybox:latest`,
/// `alpine@sha256:…` → `docker.io/library/alpine@sha256:…`), after [`check`].
pub fn normalize(text: &str) -> Result<String, ReferenceError> {
    check(text)?;
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    let (host, path) = match name.split_once('/') {
        Some((host, path)) if host.contains(['.', ':']) || host == "localhost" => (host, path),
        _ => (DOCKER_HUB, name),
    };
    let host = if host == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        host
    };
    let mut out = String::with_capacity(text.len() + 24);
    out.push_str(host);
    out.push('/');
    if host == DOCKER_HUB && !path.contains('/') {
        out.push_str("library/");
    }
    out.push_str(path);
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX64: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_hub_defaults() {
        assert_eq!(
            normalize("nginx:1.27").unwrap(),
            "docker.io/library/nginx:1.27"
        );
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize("ghcr.io/acme/api:1.4.2").unwrap(),
            "ghcr.io/acme/api:1.4.2"
        );
        assert_eq!(
            normalize("127.0.0.1:5000/busybox:1").unwrap(),
            "127.0.0.1:5000/busybox:1"
        );
        assert_eq!(
            normalize("index.docker.io/library/busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(normalize("acme/app").unwrap(), "docker.io/acme/app:latest");
        assert_eq!(normalize("localhost/a").unwrap(), "localhost/a:latest");
        let digest = format!("sha256:{HEX64}");
        assert_eq!(
            normalize(&format!("alpine@{digest}")).unwrap(),
            format!("docker.io/library/alpine@{digest}")
        );
        assert_eq!(
            normalize(&format!("alpine:3@{digest}")).unwrap(),
            format!("docker.io/library/alpine:3@{digest}")
        );
        for bad in ["", "repo/UPPER", "a b", "busybox:", "x@sha256:zz"] {
            assert!(normalize(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_distribution_grammar() {
        for good in [
            "a",
            "a0/b-c/d.e/f_g/h__i/j---k",
            "busybox:Latest_1.x-y",
            "_tag:_x".trim_start_matches('_'),
            "localhost/a",
            "localhost:5000/a",
            "Registry.Example:5000/team/app:v1",
            "my-registry.example.com/a/b",
            "index.docker.io/library/busybox",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
        let cases: &[(&str, ReferenceError)] = &[
            ("a@@b", ReferenceError::Digest("@b".into())),
            ("a//b", ReferenceError::Component(String::new())),
            ("a/", ReferenceError::Component(String::new())),
            ("/a", ReferenceError::Component(String::new())),
            ("-a", ReferenceError::Component("-a".into())),
            ("a-", ReferenceError::Component("a-".into())),
            ("a..b", ReferenceError::Component("a..b".into())),
            ("a___b", ReferenceError::Component("a___b".into())),
            ("a._b", ReferenceError::Component("a._b".into())),
            ("a:", ReferenceError::Tag(String::new())),
            ("a:b:c", ReferenceError::Component("a:b".into())),
            ("a:.b", ReferenceError::Tag(".b".into())),
            ("a:é", ReferenceError::Tag("é".into())),
            (":tag", ReferenceError::NoName),
            ("@sha256:", ReferenceError::Digest("sha256:".into())),
            ("a@sha256", ReferenceError::Digest("sha256".into())),
            ("host:port/a", ReferenceError::Host("host:port".into())),
            ("-host.io/a", ReferenceError::Host("-host.io".into())),
            ("host..io/a", ReferenceError::Host("host..io".into())),
            ("localhost/", ReferenceError::NoName),
            ("Busybox", ReferenceError::Uppercase),
            ("ghcr.io/Acme/api", ReferenceError::Uppercase),
            ("a b", ReferenceError::Whitespace),
            ("a\0b", ReferenceError::Whitespace),
            ("", ReferenceError::Empty),
        ];
        for (text, want) in cases {
            assert_eq!(check(text).as_ref(), Err(want), "{text:?}");
        }
    }

    #[test]
    fn digests_are_lowercase_hex_of_the_algorithm_s_length() {
        assert_eq!(check(&format!("a@sha256:{HEX64}")), Ok(()));
        assert_eq!(check(&format!("a:1@sha512:{HEX64}{HEX64}")), Ok(()));
        assert_eq!(
            check(&format!("a@sha384:{}", &format!("{HEX64}{HEX64}")[..96])),
            Ok(())
        );
        for bad in [
            format!("sha256:{}", HEX64.to_uppercase()),
            format!("sha256:{}", &HEX64[..63]),
            format!("sha256:{HEX64}0"),
            "sha256:0123abcd".to_owned(),
            format!("md5:{}", &HEX64[..32]),
            format!("sha512:{HEX64}"),
        ] {
            assert!(
                matches!(check(&format!("a@{bad}")), Err(ReferenceError::Digest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn names_are_at_most_255_characters_as_normalized() {
        // docker.io/library/ + 237 = 255.
        assert_eq!(check(&"a".repeat(237)), Ok(()));
        assert_eq!(check(&"a".repeat(238)), Err(ReferenceError::TooLong(256)));
        // docker.io/ + 245 = 255.
        let two = format!("a/{}", "b".repeat(243));
        assert_eq!(check(&two), Ok(()));
        assert_eq!(check(&format!("{two}b")), Err(ReferenceError::TooLong(256)));
        let hosted = format!("127.0.0.1:9/{}", "c".repeat(243));
        assert_eq!(check(&hosted), Ok(()));
        assert_eq!(
            check(&format!("{hosted}c")),
            Err(ReferenceError::TooLong(256))
        );
        assert_eq!(
            check(&"a".repeat(4096)),
            Err(ReferenceError::TooLong(4096 + 18))
        );
        // The tag does not count; its own limit is 128.
        assert_eq!(check(&format!("a:{}", "t".repeat(128))), Ok(()));
        assert!(matches!(
            check(&format!("a:{}", "t".repeat(129))),
            Err(ReferenceError::Tag(_))
        ));
    }

    #[test]
    fn messages_stay_short() {
        let err = check(&format!("a:{}", "-".repeat(5000))).unwrap_err();
        assert!(err.to_string().len() < 250, "{err}");
    }
}
