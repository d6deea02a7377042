package regain.keycloak;

import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;

import java.net.URI;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;

import org.jboss.logging.Logger;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.AuthenticationFlowError;
import org.keycloak.authentication.Authenticator;
import org.keycloak.common.util.Time;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.forms.login.LoginFormsProvider;
import org.keycloak.models.AuthenticatorConfigModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.services.Urls;
import org.keycloak.sessions.AuthenticationSessionModel;

/**
 * "Recover your account": sends the browser to the Regain recovery service with a signed
 * request, takes the signed result back, and on success signs the user in with the
 * Temporary Access Pass the service had Keycloak issue.
 */
public class RecoverAuthenticator implements Authenticator {

    /** Auth-session note with the id of the request this session sent to the service. */
    static final String REQUEST_NOTE = "regain.request";
    /** Auth-session note naming the user whose identity the service confirmed. */
    static final String RECOVERED_NOTE = "regain.recovered";
    static final String RESULT_FIELD = "regain_result";
    /** Lifetime of a request, in seconds. */
    static final long REQUEST_LIFETIME = 600;

    private static final Logger LOG = Logger.getLogger(RecoverAuthenticator.class);

    @Override
    public void authenticate(AuthenticationFlowContext context) {
        RegainConfig.Recover settings = settings(context);
        if (settings == null) {
            notConfigured(context);
            return;
        }
        UserModel user = context.getUser();
        if (!user.isEnabled()) {
            context.getEvent().user(user).error(Errors.USER_DISABLED);
            context.failure(AuthenticationFlowError.USER_DISABLED);
            return;
        }
        KeycloakSession session = context.getSession();
        RealmModel realm = context.getRealm();
        long now = Time.currentTime();
        String jti = RegainTokens.randomId();

        Map<String, Object> claims = new LinkedHashMap<>();
        claims.put("iss", realmIssuer(context));
        claims.put("aud", settings.serviceUrl());
        claims.put("jti", jti);
        claims.put("iat", now);
        claims.put("exp", now + REQUEST_LIFETIME);
        claims.put("login", user.getUsername());
        claims.put("sub", user.getId());
        claims.put("return", context.getActionUrl(context.generateAccessCode()).toString());
        Locale locale = session.getContext().resolveLocale(user);
        if (locale != null) {
            claims.put("locale", locale.toLanguageTag());
        }
        String token = RegainTokens.sign(claims, RegainTokens.REQUEST_TYP, settings.key());

        AuthenticationSessionModel authSession = context.getAuthenticationSession();
        authSession.setAuthNote(REQUEST_NOTE, jti);
        authSession.removeAuthNote(RECOVERED_NOTE);
        LOG.debugf("Sending user %s of realm %s to the recovery service (request %s)",
                user.getId(), realm.getName(), jti);

        // The token is base64url and dots only, so it needs no further encoding in a query.
        URI location = URI.create(settings.serviceUrl() + "/recover/keycloak?request=" + token);
        context.forceChallenge(Response.status(Response.Status.FOUND)
                .location(location)
                .header("Cache-Control", "no-store")
                .build());
    }

    @Override
    public void action(AuthenticationFlowContext context) {
        MultivaluedMap<String, String> form = context.getHttpRequest().getDecodedFormParameters();
        if (form.containsKey("cancel")) {
            context.cancelLogin();
            return;
        }
        RegainConfig.Recover settings = settings(context);
        if (settings == null) {
            notConfigured(context);
            return;
        }
        String result = form.getFirst(RESULT_FIELD);
        if (result != null) {
            acceptResult(context, settings, result);
            return;
        }
        String tap = form.getFirst(TapLogin.FIELD);
        String recovered = context.getAuthenticationSession().getAuthNote(RECOVERED_NOTE);
        if (tap != null && recovered != null && recovered.equals(context.getUser().getId())) {
            if (TapLogin.submit(context, tap, settings.requiredAction())) {
                context.getAuthenticationSession().removeAuthNote(RECOVERED_NOTE);
            }
            return;
        }
        LOG.debugf("Unexpected submission to the recovery step for user %s", context.getUser().getId());
        context.getEvent().user(context.getUser()).error(Errors.INVALID_REQUEST);
        context.failure(AuthenticationFlowError.GENERIC_AUTHENTICATION_ERROR,
                errorPage(context, Response.Status.BAD_REQUEST, RegainMessages.UNEXPECTED));
    }

    private void acceptResult(AuthenticationFlowContext context, RegainConfig.Recover settings, String token) {
        UserModel user = context.getUser();
        AuthenticationSessionModel authSession = context.getAuthenticationSession();
        long now = Time.currentTime();
        RecoveryResult result;
        try {
            Map<String, Object> claims = RegainTokens.verify(token, RegainTokens.RESULT_TYP, settings.key());
            result = RecoveryResult.check(claims, settings.serviceUrl(), realmIssuer(context),
                    authSession.getAuthNote(REQUEST_NOTE), user.getId(), now);
            long lifetime = Math.max(1, result.exp() - now);
            if (!context.getSession().singleUseObjects().putIfAbsent("regain-result:" + result.jti(), lifetime)) {
                throw new TokenException(TokenException.Reason.REPLAYED, "jti " + result.jti() + " was used before");
            }
        } catch (TokenException e) {
            LOG.warnf("Refused a recovery result for user %s in realm %s: %s",
                    user.getId(), context.getRealm().getName(), e.getMessage());
            context.getEvent().user(user).detail(Details.REASON, e.reason().name().toLowerCase(Locale.ROOT))
                    .error(Errors.INVALID_TOKEN);
            context.failure(AuthenticationFlowError.INVALID_CREDENTIALS,
                    errorPage(context, Response.Status.BAD_REQUEST, RegainMessages.RESULT_INVALID));
            return;
        }
        // One result per request: a second result for the same request is refused.
        authSession.removeAuthNote(REQUEST_NOTE);

        switch (result.outcome()) {
            case COMPLETED -> {
                LOG.debugf("Recovery completed for user %s; asking for the pass", user.getId());
                authSession.setAuthNote(RECOVERED_NOTE, user.getId());
                context.challenge(TapLogin.form(context, RegainMessages.IDENTITY_CONFIRMED, null));
            }
            case FAILED -> {
                LOG.infof("Recovery failed for user %s in realm %s (helpdesk reference %s)",
                        user.getId(), context.getRealm().getName(), result.helpdeskRef());
                context.getEvent().user(user).detail(Details.REASON, "recovery_failed").error(Errors.ACCESS_DENIED);
                LoginFormsProvider page = context.form();
                if (result.helpdeskRef() != null) {
                    page.setError(RegainMessages.RECOVERY_FAILED, result.helpdeskRef());
                } else {
                    page.setError(RegainMessages.RECOVERY_FAILED_NO_REF);
                }
                context.failure(AuthenticationFlowError.ACCESS_DENIED, page.createErrorPage(Response.Status.FORBIDDEN));
            }
            case EVALUATION_COMPLETED -> {
                LOG.infof("Recovery in evaluation mode completed for user %s in realm %s",
                        user.getId(), context.getRealm().getName());
                // A page and nothing to submit: the flow stays where it is and never succeeds,
                // and an evaluation run is not counted as a failed sign-in.
                context.forceChallenge(context.form()
                        .setError(RegainMessages.EVALUATION)
                        .createErrorPage(Response.Status.OK));
            }
            default -> throw new IllegalStateException("unhandled outcome " + result.outcome());
        }
    }

    private static RegainConfig.Recover settings(AuthenticationFlowContext context) {
        AuthenticatorConfigModel config = context.getAuthenticatorConfig();
        try {
            return RegainConfig.recover(config == null ? null : config.getConfig());
        } catch (IllegalArgumentException e) {
            LOG.warnf("Account recovery in realm %s is not usable: %s", context.getRealm().getName(), e.getMessage());
            return null;
        }
    }

    private static void notConfigured(AuthenticationFlowContext context) {
        context.failure(AuthenticationFlowError.INTERNAL_ERROR,
                errorPage(context, Response.Status.INTERNAL_SERVER_ERROR, RegainMessages.NOT_CONFIGURED));
    }

    private static Response errorPage(AuthenticationFlowContext context, Response.Status status, String key) {
        return context.form().setError(key).createErrorPage(status);
    }

    private static String realmIssuer(AuthenticationFlowContext context) {
        return Urls.realmIssuer(context.getSession().getContext().getUri().getBaseUri(), context.getRealm().getName());
    }

    @Override
    public boolean requiresUser() {
        return true;
    }

    @Override
    public boolean configuredFor(KeycloakSession session, RealmModel realm, UserModel user) {
        return true;
    }

    @Override
    public void setRequiredActions(KeycloakSession session, RealmModel realm, UserModel user) {
    }

    @Override
    public void close() {
    }
}
