//! The operator's credential: a bearer token in the `authorization` metadata.
//!
//! Write calls always need it when the node has one configured; read calls need it when the
//! node is configured so. The comparison takes the same time wherever the tokens differ.

use tonic::{Request, Status};

/// The metadata key that carries the credential.
pub const AUTHORIZATION: &str = "authorization";
/// Longest token accepted (longer ones are refused without comparing).
pub const TOKEN_BYTES_MAX: usize = 512;

fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks that `request` carries `Bearer <token>`; `None` means no credential is configured
/// and every request passes.
pub fn check<T>(request: &Request<T>, token: Option<&str>) -> Result<(), Status> {
    let Some(token) = token else {
        return Ok(());
    };
    let Some(value) = request.metadata().get(AUTHORIZATION) else {
        return Err(Status::unauthenticated(
            "missing credential: send `authorization: Bearer <token>` metadata",
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|v| v.len() <= TOKEN_BYTES_MAX);
    match presented {
        Some(presented) if equal_in_constant_time(presented.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(Status::unauthenticated("credential refused: wrong token")),
        None => Err(Status::unauthenticated(
            "credential refused: expected `Bearer <token>`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(value) = value {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn tokens_are_checked_when_configured() {
        assert!(check(&request(None), None).is_ok());
        assert!(check(&request(Some("Bearer anything")), None).is_ok());
        assert!(check(&request(Some("Bearer s3cret")), Some("s3cret")).is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Bearer s3cre"),
        ] {
            let status = check(&request(bad), Some("s3cret")).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
    }
}
