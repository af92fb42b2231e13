//! SaslHandshake and SaslAuthenticate, mechanism PLAIN.
//!
//! The user name selects the connection's tenant. Passwords are not checked
//! yet: authentication (and with it, refusing unauthenticated connections)
//! comes with the tenants' credentials; the exchange is in place so clients
//! configured for SASL/PLAIN work unchanged today and keep working then.

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::context::{Sasl, Session, Shared};
use crate::errors;

const PLAIN: &str = "PLAIN";

pub(crate) fn handshake(
    session: &mut Session,
    request: &SaslHandshakeRequest,
    _version: i16,
) -> SaslHandshakeResponse {
    let response =
        SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str(PLAIN)]);
    if session.sasl != Sasl::None {
        return response.with_error_code(errors::ILLEGAL_SASL_STATE);
    }
    if request.mechanism.as_str() != PLAIN {
        return response.with_error_code(errors::UNSUPPORTED_SASL_MECHANISM);
    }
    session.sasl = Sasl::HandshakePlain;
    response
}

/// The user name of a PLAIN message: `[authzid] NUL authcid NUL password`.
fn plain_user(token: &[u8]) -> Option<&str> {
    let mut parts = token.split(|&b| b == 0);
    let (_authzid, user, _password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || user.is_empty() {
        return None;
    }
    std::str::from_utf8(user).ok()
}

pub(crate) async fn authenticate(
    shared: &Shared,
    session: &mut Session,
    request: &SaslAuthenticateRequest,
    _version: i16,
) -> SaslAuthenticateResponse {
    let fail = |code: i16, message: String| {
        SaslAuthenticateResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if session.sasl != Sasl::HandshakePlain {
        return fail(
            errors::ILLEGAL_SASL_STATE,
            "SaslAuthenticate must follow a SaslHandshake choosing PLAIN".into(),
        );
    }
    let Some(user) = plain_user(&request.auth_bytes) else {
        return fail(
            errors::SASL_AUTHENTICATION_FAILED,
            "malformed SASL/PLAIN message".into(),
        );
    };
    match shared.broker.list_tenants().await {
        Ok(tenants) if tenants.iter().any(|t| t == user) => {
            session.tenant = user.to_owned();
            session.sasl = Sasl::Authenticated(user.to_owned());
            SaslAuthenticateResponse::default()
        }
        Ok(_) => fail(
            errors::SASL_AUTHENTICATION_FAILED,
            format!("unknown tenant {user:?}: the SASL user name selects the tenant"),
        ),
        Err(e) => fail(errors::SASL_AUTHENTICATION_FAILED, e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_user;

    #[test]
    fn plain_tokens() {
        assert_eq!(plain_user(b"\0acme\0secret"), Some("acme"));
        assert_eq!(plain_user(b"admin\0acme\0secret"), Some("acme"));
        assert_eq!(plain_user(b"\0\0secret"), None);
        assert_eq!(plain_user(b"acme"), None);
        assert_eq!(plain_user(b"\0a\0b\0c"), None);
    }
}
