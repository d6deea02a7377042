//! The reference server's implementation of the plugin's imports: its database is the
//! directory, the credential store, the audit log and the notification outbox; trust
//! material comes from the deployment's files; face comparison from a configured service.

use crate::accounts::{Account, Revoked, UserRead, Window};
use crate::store::{Passes, Store, now};
use crate::trust::TrustSource;
use regain_host::reload::DeploymentStore;
use regain_host::wit::credentials::{CredentialError, IssuedTap, MethodKind, TapRequest};
use regain_host::wit::deployment::{Bundle, DeploymentError};
use regain_host::wit::directory::DirectoryError;
use regain_host::wit::events::{AuditEvent, AuditKind, EventsError, NotificationKind, RecentWindow};
use regain_host::wit::face_check::{FaceCheckError, FaceComparison};
use regain_host::wit::trust::TrustError;
use regain_host::wit::types::User;
use std::sync::Arc;

/// A boxed future, so that face services can be chosen at run time.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A face comparison service (a commercial one in production).
pub trait FaceService: Send + Sync + 'static {
    /// Compares the credential portrait with the selfie the recovery page captured.
    fn compare<'a>(
        &'a self,
        portrait: &'a [u8],
        selfie: &'a [u8],
    ) -> BoxFuture<'a, Result<FaceComparison, FaceCheckError>>;
}

/// No service configured: every comparison fails closed.
pub struct NoFaceService;

impl FaceService for NoFaceService {
    fn compare<'a>(&'a self, _: &'a [u8], _: &'a [u8]) -> BoxFuture<'a, Result<FaceComparison, FaceCheckError>> {
        Box::pin(async { Err(FaceCheckError::Unavailable("no face comparison service is configured".into())) })
    }
}

/// A face comparison service over HTTP: `POST` of `{"portrait": b64, "selfie": b64}`
/// answered by `{"score": 0-100, "live": bool}`.
pub struct HttpFaceService {
    url: String,
    http: reqwest::Client,
}

impl HttpFaceService {
    /// The service at `url`.
    pub fn new(url: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { url: url.to_owned(), http })
    }
}

#[derive(serde::Deserialize)]
struct FaceAnswer {
    score: u8,
    live: bool,
}

impl FaceService for HttpFaceService {
    fn compare<'a>(
        &'a self,
        portrait: &'a [u8],
        selfie: &'a [u8],
    ) -> BoxFuture<'a, Result<FaceComparison, FaceCheckError>> {
        Box::pin(async move {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let body = serde_json::json!({ "portrait": b64.encode(portrait), "selfie": b64.encode(selfie) });
            let down = |e: String| {
                tracing::warn!(error = %e, "face comparison service failed");
                FaceCheckError::Unavailable("the face comparison service is unavailable".into())
            };
            let response = self.http.post(&self.url).json(&body).send().await.map_err(|e| down(e.to_string()))?;
            if !response.status().is_success() {
                return Err(down(format!("it answered {}", response.status())));
            }
            let answer: FaceAnswer = response.json().await.map_err(|e| down(e.to_string()))?;
            Ok(FaceComparison { score: answer.score.min(100), live: answer.live })
        })
    }
}

/// The login a request has looked up and its user, if any, with what a recovery would remove
/// from them.
type LookedUp = Arc<std::sync::Mutex<Option<(String, Option<UserRead>)>>>;

/// A selfie captured by the request in progress: `(reference, image)`.
type Selfie = Arc<std::sync::Mutex<Option<(String, Vec<u8>)>>>;

/// The adapter: cheap to clone, one per plugin call.
#[derive(Clone)]
pub struct ServerAdapter {
    store: Store,
    passes: Passes,
    deployments: DeploymentStore,
    trust: Arc<TrustSource>,
    face: Arc<dyn FaceService>,
    /// Keycloak as the directory: users, credentials and sessions live there.
    keycloak: Option<Arc<crate::keycloak::Keycloak>>,
    /// The selfie of this request, in memory only.
    selfie: Selfie,
    /// The user this request read (with the flow's lease, or looked up), with what a
    /// recovery would remove from them, or that no user has the login it looked up: a lookup
    /// of that login needs no statement (whether a user has it or not), and a
    /// removal is held for the step's last write and still answers its counts. Only an
    /// adapter made for one request ([`ServerAdapter::on`]) keeps one, so that no read
    /// outlives its request.
    looked_up: Option<LookedUp>,
    /// The windows of audit events the plugin last asked to count: a recovery's start reads
    /// the user's events in those with the user, and the plugin's count is answered from that
    /// read when it asks for the same windows (it asks again otherwise).
    windows: Arc<std::sync::Mutex<Vec<Window>>>,
}

impl ServerAdapter {
    /// The adapter over the server's services.
    pub fn new(
        store: Store,
        passes: Passes,
        deployments: DeploymentStore,
        trust: Arc<TrustSource>,
        face: Arc<dyn FaceService>,
    ) -> Self {
        Self {
            store,
            passes,
            deployments,
            trust,
            face,
            keycloak: None,
            selfie: Selfie::default(),
            looked_up: None,
            windows: Arc::default(),
        }
    }

    /// The same adapter with Keycloak as the directory: users are looked up, passes issued,
    /// methods and sessions revoked in Keycloak; audit events stay in this server's database.
    #[must_use]
    pub fn with_keycloak(mut self, keycloak: Arc<crate::keycloak::Keycloak>) -> Self {
        self.keycloak = Some(keycloak);
        self
    }

    /// The same adapter over a request's own handle of the database.
    #[must_use]
    pub fn on(&self, store: &Store) -> Self {
        Self {
            store: store.clone(),
            passes: self.passes.on(store),
            selfie: Selfie::default(),
            looked_up: Some(Arc::default()),
            ..self.clone()
        }
    }

    /// The windows of audit events the plugin asked to count last (none before it first
    /// asked), to read with the user at a recovery's start.
    pub fn recent_windows(&self) -> Vec<Window> {
        self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn remember_windows(&self, asked: &[Window]) {
        let mut remembered = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *remembered != asked {
            *remembered = asked.to_vec();
        }
    }

    /// The user this request has read already (with the lease of its flow), for the
    /// plugin's lookup in the same request.
    pub fn knows(&self, user: Option<UserRead>) {
        if let Some(user) = user {
            self.remember(&user.account.login.clone(), Some(user));
        }
    }

    /// The user this request has read (nothing on an adapter not made for a request).
    fn known(&self) -> Option<UserRead> {
        self.looked_up.as_ref()?.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()?.1
    }

    /// What this request has read of the user of `login`: `None` when it has not looked
    /// that login up, `Some(None)` when no user has it.
    fn known_login(&self, login: &str) -> Option<Option<Account>> {
        let slot = self.looked_up.as_ref()?.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (looked_up, user) = slot.as_ref()?;
        (looked_up == login).then(|| user.as_ref().map(|read| read.account.clone()))
    }

    /// Keeps what this request read of the user of `login` (`None`: no user has it), for
    /// the plugin's look-up of that login (nothing is kept on an adapter not made for a
    /// request).
    pub(crate) fn remember(&self, login: &str, user: Option<UserRead>) {
        if let Some(slot) = &self.looked_up {
            *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((login.to_owned(), user));
        }
    }

    /// Keeps a captured selfie for its comparison in the same request and answers the
    /// reference the plugin is resumed with. A selfie is biometric data: it stays in this
    /// request's memory, is compared once and is never written anywhere; a second capture
    /// replaces the first.
    pub fn keep_selfie(&self, image: Vec<u8>) -> Result<String, crate::store::StoreError> {
        let reference = crate::store::random_hex(16)?;
        *self.selfie.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((reference.clone(), image));
        Ok(reference)
    }
}

fn unavailable<E: std::fmt::Display>(e: E) -> String {
    tracing::error!(error = %e, "store failure behind a plugin import");
    "the server's database is unavailable".into()
}

impl regain_host::Directory for ServerAdapter {
    async fn find_user_by_login(&self, login: String) -> Result<Option<User>, DirectoryError> {
        if let Some(keycloak) = &self.keycloak {
            self.store.let_go().await;
            return keycloak.find_user_by_login(&login).await;
        }
        let found = match self.known_login(&login) {
            // What `WHERE login = $1` would answer, read earlier in this request.
            Some(found) => found,
            None => {
                let found = self
                    .store
                    .user_by_login_with_methods(&login)
                    .await
                    .map_err(|e| DirectoryError::Unavailable(unavailable(e)))?;
                self.remember(&login, found.clone());
                found.map(|read| read.account)
            }
        };
        Ok(found.map(|a| User {
            id: a.id,
            login: a.login,
            given_name: a.given_name,
            family_name: a.family_name,
            enabled: a.enabled,
            last_sign_in: a.last_sign_in.and_then(|t| u64::try_from(t).ok()),
            groups: a.groups,
            country: a.country,
            privileged: a.privileged,
            attributes: a.attributes.into_iter().collect(),
        }))
    }

    async fn count_users_by_name(&self, given_name: String, family_name: String) -> Result<u32, DirectoryError> {
        if let Some(keycloak) = &self.keycloak {
            self.store.let_go().await;
            return keycloak.count_users_by_name(&given_name, &family_name).await;
        }
        // The user this request read has these very names: their count was read with them.
        let known = self.known().filter(|read| {
            read.account.given_name.as_deref() == Some(given_name.as_str())
                && read.account.family_name.as_deref() == Some(family_name.as_str())
        });
        let count = match known.and_then(|read| read.namesakes) {
            Some(namesakes) => namesakes,
            None => self
                .store
                .count_users_by_name(&given_name, &family_name)
                .await
                .map_err(|e| DirectoryError::Unavailable(unavailable(e)))?,
        };
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }
}

impl ServerAdapter {
    /// Keycloak, once the audit events held so far are stored (a credential is about to
    /// change there: no change is ever without its trail) and the request's connection is
    /// given back while Keycloak answers. On this server's own database the held events go
    /// in the same batch as the change instead.
    async fn keycloak_after_audit(&self) -> Result<Option<&crate::keycloak::Keycloak>, CredentialError> {
        let Some(keycloak) = self.keycloak.as_deref() else { return Ok(None) };
        self.store.flush().await.map_err(|e| CredentialError::Unavailable(unavailable(e)))?;
        self.store.let_go().await;
        Ok(Some(keycloak))
    }
}

impl ServerAdapter {
    /// When this request looked the user up: holds the revocation for the step's last write
    /// and answers how many methods and sessions it removes. `None` otherwise: the caller
    /// then revokes at once and counts what it removed.
    async fn hold_revocations(&self, user_id: &str, revoked: Revoked) -> Result<Option<(u64, u64)>, CredentialError> {
        let had = match self.known() {
            Some(read) if read.account.id == user_id => read.methods,
            _ => return Ok(None),
        };
        let counts = self
            .store
            .hold_revocations(user_id, &had, revoked, now())
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?;
        Ok(Some(counts))
    }
}

impl regain_host::Credentials for ServerAdapter {
    async fn issue_tap(&self, request: TapRequest) -> Result<IssuedTap, CredentialError> {
        if let Some(keycloak) = self.keycloak_after_audit().await? {
            return keycloak.issue_tap(&request).await;
        }
        let issued = self
            .passes
            .issue(
                &request.user_id,
                i64::from(request.lifetime_seconds),
                i64::from(request.not_before_seconds),
                request.one_time,
                request.length,
                now(),
            )
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?;
        Ok(IssuedTap {
            tap_id: issued.tap_id,
            secret: issued.secret,
            expires_at: u64::try_from(issued.expires_at).unwrap_or(0),
        })
    }

    async fn revoke_methods(&self, user_id: String, kinds: Vec<MethodKind>) -> Result<u32, CredentialError> {
        if let Some(keycloak) = self.keycloak_after_audit().await? {
            return keycloak.revoke_methods(&user_id, &kinds).await;
        }
        let revoked = Revoked {
            password: kinds.contains(&MethodKind::Password),
            totp: kinds.contains(&MethodKind::Totp),
            passkeys: kinds.contains(&MethodKind::Passkey),
            sessions: false,
        };
        if let Some((methods, _)) = self.hold_revocations(&user_id, revoked).await? {
            return Ok(u32::try_from(methods).unwrap_or(u32::MAX));
        }
        let removed = self
            .store
            .remove_methods(
                &user_id,
                kinds.contains(&MethodKind::Password),
                kinds.contains(&MethodKind::Totp),
                kinds.contains(&MethodKind::Passkey),
            )
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?;
        // Phone and email factors are not stored by this server yet; passes are never revoked
        // here, since the one just issued is the way back in.
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }

    async fn require_registration(&self, user_id: String) -> Result<(), CredentialError> {
        if let Some(keycloak) = self.keycloak_after_audit().await? {
            return keycloak.require_registration(&user_id).await;
        }
        self.store.require_registration(&user_id).await.map_err(|e| CredentialError::Unavailable(unavailable(e)))
    }

    async fn revoke_sessions(&self, user_id: String) -> Result<u32, CredentialError> {
        if let Some(keycloak) = self.keycloak_after_audit().await? {
            return keycloak.revoke_sessions(&user_id).await;
        }
        let revoked = Revoked { sessions: true, ..Revoked::default() };
        if let Some((_, sessions)) = self.hold_revocations(&user_id, revoked).await? {
            return Ok(u32::try_from(sessions).unwrap_or(u32::MAX));
        }
        let ended = self
            .store
            .revoke_browser_sessions(&user_id, now())
            .await
            .map_err(|e| CredentialError::Unavailable(unavailable(e)))?;
        Ok(u32::try_from(ended).unwrap_or(u32::MAX))
    }
}

impl regain_host::Trust for ServerAdapter {
    async fn issuer_keys(&self, issuer: String) -> Result<String, TrustError> {
        // A fetch may take seconds; no connection waits for it.
        self.trust.issuer_keys(&issuer, async || self.store.let_go().await).await
    }

    async fn status_list_token(&self, uri: String) -> Result<String, TrustError> {
        self.trust.status_list_token(&uri, async || self.store.let_go().await).await
    }
}

impl regain_host::FaceCheck for ServerAdapter {
    async fn compare(&self, portrait: Vec<u8>, selfie_ref: String) -> Result<FaceComparison, FaceCheckError> {
        let kept = self.selfie.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let selfie = match kept {
            Some((reference, image))
                if regain_core::secret::constant_time_eq(reference.as_bytes(), selfie_ref.as_bytes()) =>
            {
                image
            }
            _ => return Err(FaceCheckError::UnknownSelfie),
        };
        // The comparison may take seconds; no connection waits for it.
        self.store.let_go().await;
        self.face.compare(&portrait, &selfie).await
    }
}

impl regain_host::Events for ServerAdapter {
    async fn record_audit(&self, event: AuditEvent) -> Result<(), EventsError> {
        let kind: AuditKind = event.kind;
        let record = regain_core::env::AuditRecord {
            at: u64::try_from(now()).unwrap_or(0),
            kind: serde_json::from_value(serde_json::Value::String(kind.as_str().into()))
                .map_err(|e| EventsError::Unavailable(e.to_string()))?,
            flow_id: event.flow_id,
            user_id: event.user_id,
            reason: event.reason,
            helpdesk_ref: event.helpdesk_ref,
        };
        self.store.record_audit(&record).await.map_err(|e| EventsError::Unavailable(unavailable(e)))
    }

    async fn count_recent(&self, user_id: String, windows: Vec<RecentWindow>) -> Result<Vec<u32>, EventsError> {
        let t = now();
        let mut asked = Vec::with_capacity(windows.len());
        for w in windows {
            let kind = serde_json::from_value(serde_json::Value::String(w.kind.as_str().into()))
                .map_err(|e| EventsError::Unavailable(e.to_string()))?;
            asked.push(Window { kind, seconds: w.window_seconds });
        }
        let since = |w: &Window| t.saturating_sub(i64::try_from(w.seconds).unwrap_or(i64::MAX));
        let read = self.known().filter(|read| {
            read.account.id == user_id
                && read.recent.len() == asked.len()
                && read.recent.iter().zip(&asked).all(|((window, _), w)| window == w)
        });
        let counts = match read {
            // Read with the user at the start of this request; what it holds since is added.
            Some(read) => read
                .recent
                .iter()
                .map(|(w, stored)| stored.saturating_add(self.store.held_events(&user_id, w.kind, since(w))))
                .collect(),
            None => {
                self.remember_windows(&asked);
                let since: Vec<_> = asked.iter().map(|w| (w.kind, since(w))).collect();
                self.store
                    .count_recent_each(&user_id, &since)
                    .await
                    .map_err(|e| EventsError::Unavailable(unavailable(e)))?
            }
        };
        Ok(counts.into_iter().map(|c| u32::try_from(c).unwrap_or(u32::MAX)).collect())
    }

    async fn notify_user(&self, user_id: String, kind: NotificationKind) -> Result<(), EventsError> {
        let kind = match kind {
            NotificationKind::AccessRestored => "access-restored",
            NotificationKind::RecoveryAttempted => "recovery-attempted",
        };
        self.store.queue_notification(&user_id, kind, now()).await.map_err(|e| EventsError::Unavailable(unavailable(e)))
    }
}

impl regain_host::Deployments for ServerAdapter {
    async fn bundle(&self, config_ref: String) -> Result<Bundle, DeploymentError> {
        self.deployments.get(&config_ref).map(|b| (*b).clone()).ok_or(DeploymentError::Unknown(config_ref))
    }

    async fn revision(&self, config_ref: String) -> Result<u64, DeploymentError> {
        self.deployments.revision(&config_ref).ok_or(DeploymentError::Unknown(config_ref))
    }
}
