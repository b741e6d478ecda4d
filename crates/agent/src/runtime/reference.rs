//! Image references, `[domain/]path[:tag][@digest]`, read the way Docker and containerd
//! read them: the first path component is a registry domain when it contains `.` or `:`
//! or is `localhost`, and Docker Hub is the registry otherwise.

/// The parts of a reference.
struct Parts<'a> {
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

fn split(reference: &str) -> Parts<'_> {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let (name, tag) = match name.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (Some(first), rest),
        _ => (None, name),
    };
    Parts { domain, path, tag, digest }
}

/// Checks the syntax of a reference, with a lower-case path. Returns the problem for an
/// `InvalidImageName` message.
pub fn check(reference: &str) -> Result<(), &'static str> {
    if reference.is_empty() {
        return Err("the image name is empty");
    }
    let parts = split(reference);
    if let Some(digest) = parts.digest {
        let (algorithm, hex) = digest.split_once(':').ok_or("invalid digest")?;
        let valid = !algorithm.is_empty() && hex.len() >= 32 && hex.chars().all(|c| c.is_ascii_hexdigit());
        if !valid {
            return Err("invalid digest");
        }
    }
    if let Some(tag) = parts.tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err("invalid tag");
        }
    }
    let lower_or_digit = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid_component = |component: &str| {
        component.starts_with(lower_or_digit)
            && component.ends_with(lower_or_digit)
            && component.chars().all(|c| lower_or_digit(c) || matches!(c, '.' | '_' | '-'))
    };
    if parts.path.split('/').all(valid_component) {
        Ok(())
    } else {
        Err("repository name must be lowercase")
    }
}

/// Returns the repository in the form repo digests use: without tag or digest, with
/// Docker Hub's implied `docker.io/` and `library/` added.
pub fn repository(reference: &str) -> String {
    let parts = split(reference);
    match parts.domain {
        Some(domain) => format!("{domain}/{}", parts.path),
        None if parts.path.contains('/') => format!("docker.io/{}", parts.path),
        None => format!("docker.io/library/{}", parts.path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked() {
        let valid = [
            "busybox",
            "busybox:local",
            "127.0.0.1:5000/team/busybox:v1",
            "registry.local/pause:local",
            "localhost/app@sha256:0123456789abcdef0123456789abcdef",
        ];
        for reference in valid {
            assert_eq!(check(reference), Ok(()), "{reference}");
        }
        assert_eq!(check("UPPER/Case:x"), Err("repository name must be lowercase"));
        assert_eq!(check("busybox:bad tag"), Err("invalid tag"));
        assert_eq!(check("busybox@sha256:xyz"), Err("invalid digest"));
        assert_eq!(check(""), Err("the image name is empty"));
    }

    #[test]
    fn repositories_are_normalized() {
        assert_eq!(repository("busybox:local"), "docker.io/library/busybox");
        assert_eq!(repository("library/busybox"), "docker.io/library/busybox");
        assert_eq!(repository("team/app:v1"), "docker.io/team/app");
        assert_eq!(repository("127.0.0.1:5000/team/busybox:v1"), "127.0.0.1:5000/team/busybox");
        assert_eq!(repository("127.0.0.1:5000/busybox"), "127.0.0.1:5000/busybox");
        assert_eq!(repository("registry.local/pause:local"), "registry.local/pause");
        assert_eq!(repository("localhost/app@sha256:ab"), "localhost/app");
    }
}
