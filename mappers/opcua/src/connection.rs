//! One OPC UA session to one server: discovery of the endpoint, the secure channel with the
//! configured policy and mode, the user identity, and the session's event loop.
//!
//! The session never reconnects by itself: when the connection is lost (the server closed it, a
//! request timed out on a dead network, the keep-alive read failed), [`Connection::check`] and
//! every request fail with [`DriverError::Disconnected`] and the subscriptions' push channel is
//! failed, so the SDK runtime reopens the session with its backoff and subscribes again. One
//! retry policy (the runtime's) governs every protocol.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgetwin_sdk::{DriverError, PushSender};
use futures::StreamExt;
use opcua::client::{
    ANONYMOUS_USER_TOKEN_ID, ClientBuilder, ClientEndpoint, IdentityToken, Password, Session,
    SessionPollResult,
};
use opcua::core::comms::url::{hostname_from_url, url_with_replaced_hostname};
use opcua::crypto::SecurityPolicy as UaPolicy;
use opcua::types::{EndpointDescription, MessageSecurityMode, StatusCode, UserTokenType};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    DeviceSettings, Identity, MAX_PASSWORD_FILE, PasswordSource, SecurityMode, SecurityPolicy,
};
use crate::pki::{self, Pki};

/// The state of the session's connection, as its event loop sees it.
#[derive(Debug, Clone, PartialEq)]
enum Link {
    /// The first connect is under way.
    Connecting,
    /// The session is active.
    Up,
    /// The first connect failed.
    Failed(StatusCode),
    /// The connection was lost (or closed).
    Down,
}

/// An open session and the task that drives it.
pub struct Connection {
    session: Arc<Session>,
    link: watch::Receiver<Link>,
    task: JoinHandle<()>,
    /// Failed when the connection is lost, so that pushed values stop and the runtime reconnects.
    push: Arc<Mutex<Option<PushSender>>>,
    url: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url)
            .finish()
    }
}

impl Connection {
    /// Discovers the server's endpoints, opens a secure channel to the one matching the
    /// device's policy and mode, and activates a session with the device's identity.
    pub async fn open(pki: &Pki, settings: &DeviceSettings) -> Result<Connection, DriverError> {
        pki.ensure_own().map_err(DriverError::io)?;
        pki.trust(&settings.server_certificates)
            .map_err(DriverError::io)?;
        let identity = load_identity(&settings.identity)?;
        let (certificate, private_key) = match &settings.certificate {
            Some(own) => (own.certificate.clone(), own.private_key.clone()),
            None => (pki.own_certificate(), pki.own_private_key()),
        };
        let application_uri = settings
            .application_uri
            .clone()
            .unwrap_or_else(|| pki::APPLICATION_URI.to_owned());
        let mut client = ClientBuilder::new()
            .application_name(pki::APPLICATION_NAME)
            .application_uri(application_uri)
            .product_uri(pki::PRODUCT_URI)
            .pki_dir(pki.dir())
            .certificate_path(certificate)
            .private_key_path(private_key)
            .create_sample_keypair(false)
            .trust_server_certs(false)
            .session_retry_limit(0)
            .keep_alive_interval(settings.keep_alive)
            .max_failed_keep_alive_count(2)
            .request_timeout(settings.timeout)
            .publish_timeout(settings.timeout.max(Duration::from_secs(10)))
            .session_timeout(SESSION_TIMEOUT_MS)
            .min_publish_interval(Duration::from_millis(10))
            // The session connects to the endpoint chosen below; this names it for the
            // library's configuration check.
            .endpoint(
                "device",
                ClientEndpoint {
                    url: settings.url.clone(),
                    security_policy: ua_policy(settings.policy).to_str().into(),
                    security_mode: ua_mode(settings.mode).into(),
                    user_token_id: ANONYMOUS_USER_TOKEN_ID.into(),
                },
            )
            .client()
            .map_err(|errors| DriverError::config(errors.join("; ")))?;

        let endpoints = match tokio::time::timeout(
            settings.timeout,
            client.get_server_endpoints_from_url(settings.url.as_str()),
        )
        .await
        {
            Ok(Ok(endpoints)) => endpoints,
            Ok(Err(e)) => {
                return Err(DriverError::io(format!(
                    "cannot reach {}: {}",
                    settings.url,
                    e.status()
                )));
            }
            Err(_) => return Err(DriverError::Timeout(settings.timeout)),
        };
        let endpoint = choose_endpoint(&endpoints, settings)?;
        let (session, event_loop) = client
            .connect_to_endpoint_directly(endpoint, identity)
            .map_err(|e| DriverError::io(format!("{}: {e}", settings.url)))?;
        session.disable_reconnects();

        let (link_tx, mut link) = watch::channel(Link::Connecting);
        let push: Arc<Mutex<Option<PushSender>>> = Arc::default();
        let task = tokio::spawn(drive(event_loop, link_tx, Arc::clone(&push)));
        let outcome = tokio::time::timeout(
            settings.timeout * 2,
            link.wait_for(|l| *l != Link::Connecting),
        )
        .await
        .map(|state| state.map(|state| Link::clone(&state)));
        let state = match outcome {
            Ok(Ok(state)) => state,
            Ok(Err(_)) => Link::Down,
            Err(_) => {
                task.abort();
                return Err(DriverError::Timeout(settings.timeout * 2));
            }
        };
        match state {
            Link::Up => Ok(Connection {
                session,
                link,
                task,
                push,
                url: settings.url.clone(),
            }),
            Link::Failed(code) => Err(connect_error(code, settings, pki)),
            Link::Connecting | Link::Down => Err(DriverError::Disconnected(format!(
                "{}: the connection closed while the session was opened",
                settings.url
            ))),
        }
    }

    /// The session, for requests.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// `Err(Disconnected)` once the connection is lost.
    pub fn check(&self) -> Result<(), DriverError> {
        match *self.link.borrow() {
            Link::Up => Ok(()),
            _ => Err(self.lost()),
        }
    }

    /// The error of a lost connection.
    pub fn lost(&self) -> DriverError {
        DriverError::Disconnected(format!("the connection to {} was lost", self.url))
    }

    /// Fails `push` when the connection is lost (at once if it already is).
    pub fn fail_on_loss(&self, push: PushSender) {
        let mut slot = self.push.lock().unwrap_or_else(|p| p.into_inner());
        if self.check().is_err() {
            push.fail(self.lost());
        } else {
            *slot = Some(push);
        }
    }

    /// Closes the session (deleting its subscriptions on the server) and the connection.
    pub async fn close(self, timeout: Duration) {
        self.push.lock().unwrap_or_else(|p| p.into_inner()).take();
        if self.check().is_ok() {
            let _ = tokio::time::timeout(timeout, self.session.disconnect()).await;
        }
        self.task.abort();
    }
}

/// How long the server keeps a session whose client vanished without closing it.
const SESSION_TIMEOUT_MS: u32 = 60_000;

/// Polls the session's event loop until it ends, publishing the link state.
async fn drive(
    event_loop: opcua::client::SessionEventLoop<opcua::client::transport::TcpConnector>,
    link: watch::Sender<Link>,
    push: Arc<Mutex<Option<PushSender>>>,
) {
    let stream = event_loop.enter();
    futures::pin_mut!(stream);
    loop {
        match stream.next().await {
            Some(Ok(SessionPollResult::Reconnected(_))) => {
                let _ = link.send(Link::Up);
            }
            Some(Ok(_)) => {}
            Some(Err(code)) => {
                let _ = link.send(if *link.borrow() == Link::Connecting {
                    Link::Failed(code)
                } else {
                    Link::Down
                });
                break;
            }
            None => {
                let _ = link.send(Link::Down);
                break;
            }
        }
    }
    if let Some(push) = push.lock().unwrap_or_else(|p| p.into_inner()).take() {
        push.fail(DriverError::Disconnected(
            "the OPC UA connection was lost".into(),
        ));
    }
}

/// The identity token, with the password read from its file or variable now (never logged,
/// never part of an error).
fn load_identity(identity: &Identity) -> Result<IdentityToken, DriverError> {
    match identity {
        Identity::Anonymous => Ok(IdentityToken::Anonymous),
        Identity::UserName { user, password } => {
            let secret = read_password(password)?;
            Ok(IdentityToken::new_user_name(
                user.clone(),
                Password::new(secret),
            ))
        }
        Identity::Certificate {
            certificate,
            private_key,
        } => IdentityToken::new_x509_path(certificate, private_key).map_err(|e| {
            DriverError::io(format!(
                "userCertificate {} / userPrivateKey {}: {}",
                certificate.display(),
                private_key.display(),
                e.status()
            ))
        }),
    }
}

fn read_password(source: &PasswordSource) -> Result<String, DriverError> {
    match source {
        PasswordSource::File(path) => {
            let size = std::fs::metadata(path)
                .map_err(|e| DriverError::io(format!("{source}: {e}")))?
                .len();
            if size > MAX_PASSWORD_FILE {
                return Err(DriverError::config(format!(
                    "{source}: {size} bytes is too large for a password file (at most \
                     {MAX_PASSWORD_FILE})"
                )));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| DriverError::io(format!("{source}: {e}")))?;
            Ok(text.trim_end_matches(['\r', '\n']).to_owned())
        }
        PasswordSource::Env(name) => std::env::var(name).map_err(|_| {
            DriverError::io(format!(
                "{source}: the mapper has no such environment variable"
            ))
        }),
    }
}

fn ua_policy(policy: SecurityPolicy) -> UaPolicy {
    match policy {
        SecurityPolicy::None => UaPolicy::None,
        SecurityPolicy::Basic256Sha256 => UaPolicy::Basic256Sha256,
        SecurityPolicy::Aes128Sha256RsaOaep => UaPolicy::Aes128Sha256RsaOaep,
        SecurityPolicy::Aes256Sha256RsaPss => UaPolicy::Aes256Sha256RsaPss,
    }
}

fn ua_mode(mode: SecurityMode) -> MessageSecurityMode {
    match mode {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

fn token_type(identity: &Identity) -> UserTokenType {
    match identity {
        Identity::Anonymous => UserTokenType::Anonymous,
        Identity::UserName { .. } => UserTokenType::UserName,
        Identity::Certificate { .. } => UserTokenType::Certificate,
    }
}

fn token_name(kind: UserTokenType) -> &'static str {
    match kind {
        UserTokenType::Anonymous => "anonymous",
        UserTokenType::UserName => "user name",
        UserTokenType::Certificate => "certificate",
        UserTokenType::IssuedToken => "issued token",
    }
}

/// The server's endpoint with the device's policy and mode that accepts its kind of identity,
/// addressed by the host of the configured URL (servers often announce a name the edge node
/// cannot resolve). A server that offers none is a configuration error listing what it offers.
fn choose_endpoint(
    endpoints: &[EndpointDescription],
    settings: &DeviceSettings,
) -> Result<EndpointDescription, DriverError> {
    let policy = ua_policy(settings.policy);
    let mode = ua_mode(settings.mode);
    let wanted_token = token_type(&settings.identity);
    let secured: Vec<&EndpointDescription> = endpoints
        .iter()
        .filter(|e| {
            e.security_mode == mode && UaPolicy::from_uri(e.security_policy_uri.as_ref()) == policy
        })
        .collect();
    let offered = || {
        let mut list: Vec<String> = endpoints
            .iter()
            .map(|e| {
                let tokens: Vec<&str> = e
                    .user_identity_tokens
                    .iter()
                    .flatten()
                    .map(|t| token_name(t.token_type))
                    .collect();
                format!(
                    "{}/{:?} ({})",
                    UaPolicy::from_uri(e.security_policy_uri.as_ref()),
                    e.security_mode,
                    tokens.join(", ")
                )
            })
            .collect();
        list.dedup();
        list.join("; ")
    };
    if secured.is_empty() {
        return Err(DriverError::config(format!(
            "the server at {} offers no endpoint with securityPolicy {} and securityMode {}; it \
             offers: {}",
            settings.url,
            settings.policy,
            settings.mode,
            offered()
        )));
    }
    let accepts_token = |e: &&&EndpointDescription| match &e.user_identity_tokens {
        None => wanted_token == UserTokenType::Anonymous,
        Some(tokens) => tokens.iter().any(|t| t.token_type == wanted_token),
    };
    let Some(chosen) = secured.iter().find(accepts_token) else {
        return Err(DriverError::config(format!(
            "the server at {} does not accept {} logins on its {}/{} endpoint; it offers: {}",
            settings.url,
            token_name(wanted_token),
            settings.policy,
            settings.mode,
            offered()
        )));
    };
    let mut endpoint = (*chosen).clone();
    if let Ok(host) = hostname_from_url(&settings.url)
        && let Ok(url) = url_with_replaced_hostname(endpoint.endpoint_url.as_ref(), &host)
    {
        endpoint.endpoint_url = url.into();
    }
    Ok(endpoint)
}

/// What a failed session activation means, in words an operator can act on.
fn connect_error(code: StatusCode, settings: &DeviceSettings, pki: &Pki) -> DriverError {
    let refused_identity = matches!(
        code,
        StatusCode::BadUserAccessDenied
            | StatusCode::BadIdentityTokenInvalid
            | StatusCode::BadIdentityTokenRejected
            | StatusCode::BadUserSignatureInvalid
    );
    if refused_identity {
        // Never retried: a wrong password retried every few seconds can lock the account.
        let who = match &settings.identity {
            Identity::Anonymous => "anonymous logins are refused: set userName and a \
                                    passwordFile, or a userCertificate"
                .to_owned(),
            Identity::UserName { user, password } => {
                format!("check userName {user:?} and the password in {password}")
            }
            Identity::Certificate { certificate, .. } => format!(
                "check that the server accepts the user certificate {}",
                certificate.display()
            ),
        };
        return DriverError::config(format!(
            "the server at {} refused the user identity ({}): {who}; the mapper does not retry \
             until the Device changes or the mapper restarts",
            settings.url,
            code.sub_code()
        ));
    }
    let certificate_problem = matches!(
        code,
        StatusCode::BadCertificateUntrusted
            | StatusCode::BadSecurityChecksFailed
            | StatusCode::BadCertificateInvalid
            | StatusCode::BadCertificateTimeInvalid
            | StatusCode::BadCertificateHostNameInvalid
            | StatusCode::BadCertificateUriInvalid
            | StatusCode::BadCertificateUseNotAllowed
            | StatusCode::BadCertificateRevocationUnknown
            | StatusCode::BadCertificateRevoked
            | StatusCode::BadCertificateIssuerRevocationUnknown
            | StatusCode::BadSecurityPolicyRejected
    );
    if certificate_problem {
        return DriverError::io(format!(
            "the certificate check with {} failed ({}): if the mapper refused the server's \
             certificate it is in {}; trust it by moving it to {} or naming it in \
             serverCertificate; if the server refused the mapper's, trust {} on the server",
            settings.url,
            code.sub_code(),
            pki.rejected_dir().display(),
            pki.trusted_dir().display(),
            settings
                .certificate
                .as_ref()
                .map_or_else(|| pki.own_certificate(), |c| c.certificate.clone())
                .display()
        ));
    }
    if matches!(code, StatusCode::BadTimeout | StatusCode::BadRequestTimeout) {
        return DriverError::Timeout(settings.timeout);
    }
    DriverError::io(format!(
        "cannot open a session with {}: {}",
        settings.url,
        code.sub_code()
    ))
}

/// The error of a service call that failed as a whole.
pub fn service_error(code: StatusCode, timeout: Duration) -> DriverError {
    match code {
        StatusCode::BadTimeout | StatusCode::BadRequestTimeout => DriverError::Timeout(timeout),
        StatusCode::BadNotConnected
        | StatusCode::BadConnectionClosed
        | StatusCode::BadSecureChannelClosed
        | StatusCode::BadSecureChannelIdInvalid
        | StatusCode::BadSessionClosed
        | StatusCode::BadSessionIdInvalid
        | StatusCode::BadSessionNotActivated
        | StatusCode::BadCommunicationError
        | StatusCode::BadServerHalted
        | StatusCode::BadShutdown
        | StatusCode::BadTcpInternalError => {
            DriverError::Disconnected(format!("{}", code.sub_code()))
        }
        other => DriverError::Rejected(describe_status(other)),
    }
}

/// `BadNodeIdUnknown (the node id refers to a node that does not exist …)`.
pub fn describe_status(code: StatusCode) -> String {
    let description = code.sub_code().description();
    if description.is_empty() {
        format!("{}", code.sub_code())
    } else {
        format!(
            "{} ({})",
            code.sub_code(),
            description.trim_end_matches('.')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua::types::UserTokenPolicy;
    use std::path::PathBuf;

    fn endpoint(
        policy: UaPolicy,
        mode: MessageSecurityMode,
        tokens: &[UserTokenType],
    ) -> EndpointDescription {
        EndpointDescription {
            endpoint_url: "opc.tcp://plc-7.factory.internal:4840/ua".into(),
            security_policy_uri: policy.to_uri().into(),
            security_mode: mode,
            user_identity_tokens: Some(
                tokens
                    .iter()
                    .map(|t| UserTokenPolicy {
                        token_type: *t,
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn settings(policy: SecurityPolicy, mode: SecurityMode, identity: Identity) -> DeviceSettings {
        DeviceSettings {
            url: "opc.tcp://10.1.2.3:4840/ua".into(),
            policy,
            mode,
            identity,
            certificate: None,
            application_uri: None,
            server_certificates: Vec::new(),
            timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
        }
    }

    fn user() -> Identity {
        Identity::UserName {
            user: "op".into(),
            password: PasswordSource::File(PathBuf::from("/run/secrets/plc")),
        }
    }

    #[test]
    fn the_endpoint_matching_policy_mode_and_identity_is_chosen_at_the_configured_host() {
        let endpoints = [
            endpoint(
                UaPolicy::None,
                MessageSecurityMode::None,
                &[UserTokenType::Anonymous],
            ),
            endpoint(
                UaPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
                &[UserTokenType::UserName],
            ),
        ];
        let chosen = choose_endpoint(
            &endpoints,
            &settings(
                SecurityPolicy::Basic256Sha256,
                SecurityMode::SignAndEncrypt,
                user(),
            ),
        )
        .expect("matches");
        assert_eq!(chosen.security_mode, MessageSecurityMode::SignAndEncrypt);
        assert_eq!(chosen.endpoint_url.as_ref(), "opc.tcp://10.1.2.3:4840/ua");
    }

    #[test]
    fn a_missing_endpoint_is_a_configuration_error_listing_the_offers() {
        let endpoints = [endpoint(
            UaPolicy::None,
            MessageSecurityMode::None,
            &[UserTokenType::Anonymous],
        )];
        let error = choose_endpoint(
            &endpoints,
            &settings(
                SecurityPolicy::Basic256Sha256,
                SecurityMode::Sign,
                Identity::Anonymous,
            ),
        )
        .expect_err("no match");
        assert!(matches!(error, DriverError::Config(_)), "{error}");
        assert!(
            error.to_string().contains("offers: None/None (anonymous)"),
            "{error}"
        );
        let error = choose_endpoint(
            &endpoints,
            &settings(SecurityPolicy::None, SecurityMode::None, user()),
        )
        .expect_err("no user name logins");
        assert!(error.to_string().contains("user name logins"), "{error}");
    }

    #[test]
    fn a_refused_identity_is_never_retried_and_names_no_secret() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path());
        let error = connect_error(
            StatusCode::BadUserAccessDenied,
            &settings(SecurityPolicy::None, SecurityMode::None, user()),
            &pki,
        );
        assert!(matches!(error, DriverError::Config(_)), "{error}");
        let text = error.to_string();
        assert!(text.contains("BadUserAccessDenied"), "{text}");
        assert!(text.contains("passwordFile /run/secrets/plc"), "{text}");
        let error = connect_error(
            StatusCode::BadCertificateUntrusted,
            &settings(
                SecurityPolicy::Basic256Sha256,
                SecurityMode::Sign,
                Identity::Anonymous,
            ),
            &pki,
        );
        assert!(error.is_transient(), "{error}");
        assert!(error.to_string().contains("rejected"), "{error}");
    }

    #[test]
    fn passwords_come_from_files_without_the_newline_or_from_the_environment() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").expect("written");
        assert_eq!(
            read_password(&PasswordSource::File(file)).expect("read"),
            "s3cret"
        );
        let missing =
            read_password(&PasswordSource::File(dir.path().join("nope"))).expect_err("missing");
        assert!(missing.is_transient(), "{missing}");
        let unset = read_password(&PasswordSource::Env(
            "EDGETWIN_OPCUA_TEST_UNSET_VARIABLE".into(),
        ))
        .expect_err("unset");
        assert!(
            unset.to_string().contains("no such environment variable"),
            "{unset}"
        );
    }

    #[test]
    fn lost_connections_and_refusals_map_to_the_runtimes_error_kinds() {
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            service_error(StatusCode::BadConnectionClosed, timeout),
            DriverError::Disconnected(_)
        ));
        assert_eq!(
            service_error(StatusCode::BadTimeout, timeout),
            DriverError::Timeout(timeout)
        );
        let refused = service_error(StatusCode::BadTooManyOperations, timeout);
        assert!(matches!(refused, DriverError::Rejected(_)), "{refused}");
        assert!(describe_status(StatusCode::BadNodeIdUnknown).starts_with("BadNodeIdUnknown"));
    }
}
