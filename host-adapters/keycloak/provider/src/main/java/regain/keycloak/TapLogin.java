package regain.keycloak;

import jakarta.ws.rs.core.Response;

import org.jboss.logging.Logger;
import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.AuthenticationFlowError;
import org.keycloak.authentication.authenticators.util.AuthenticatorUtils;
import org.keycloak.credential.CredentialProvider;
import org.keycloak.events.Details;
import org.keycloak.events.Errors;
import org.keycloak.forms.login.LoginFormsProvider;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RequiredActionProviderModel;
import org.keycloak.models.UserCredentialModel;
import org.keycloak.models.UserModel;
import org.keycloak.models.utils.FormMessage;
import org.keycloak.sessions.AuthenticationSessionModel;

/** The pass form and its checking, shared by the pass and the recovery authenticators. */
final class TapLogin {

    static final String FIELD = "tap";
    static final String TEMPLATE = "regain-tap.ftl";
    /** Wrong passes accepted in one authentication session before it is ended. */
    static final int MAX_ATTEMPTS = 5;

    private static final Logger LOG = Logger.getLogger(TapLogin.class);
    private static final String ATTEMPTS_NOTE = "regain.tap-attempts";

    private TapLogin() {
    }

    static TapCredentialProvider provider(KeycloakSession session) {
        return (TapCredentialProvider) session.getProvider(CredentialProvider.class, TapCredentialProviderFactory.PROVIDER_ID);
    }

    /** The pass form, with an optional global info message and an optional error on the field. */
    static Response form(AuthenticationFlowContext context, String infoKey, String errorKey) {
        LoginFormsProvider form = context.form();
        if (infoKey != null) {
            form.setInfo(infoKey);
        }
        if (errorKey != null) {
            form.addError(new FormMessage(FIELD, errorKey));
        }
        return form.createForm(TEMPLATE);
    }

    /**
     * Checks the pass the user typed; on success puts the configured required action on the
     * user so that a new sign-in method is registered before the login completes.
     *
     * @return whether the flow succeeded
     */
    static boolean submit(AuthenticationFlowContext context, String typed, String requiredAction) {
        UserModel user = context.getUser();
        AuthenticationSessionModel authSession = context.getAuthenticationSession();
        context.getEvent().user(user).detail(Details.CREDENTIAL_TYPE, TapCredentialModel.TYPE);

        String bruteForceError = AuthenticatorUtils.getDisabledByBruteForceEventError(context, user);
        if (bruteForceError != null) {
            // Same answer as a wrong pass, so a locked account is not revealed; not counted again.
            context.getEvent().error(bruteForceError);
            context.forceChallenge(form(context, null, RegainMessages.TAP_INVALID));
            return false;
        }
        int attempts = attempts(authSession);
        if (attempts >= MAX_ATTEMPTS) {
            tooManyAttempts(context);
            return false;
        }

        boolean valid = provider(context.getSession()).isValid(context.getRealm(), user,
                new UserCredentialModel(null, TapCredentialModel.TYPE, typed == null ? "" : typed));
        if (valid) {
            authSession.removeAuthNote(ATTEMPTS_NOTE);
            requireAction(context, user, requiredAction);
            context.success();
            return true;
        }

        attempts++;
        authSession.setAuthNote(ATTEMPTS_NOTE, Integer.toString(attempts));
        context.getEvent().error(Errors.INVALID_USER_CREDENTIALS);
        if (attempts >= MAX_ATTEMPTS) {
            tooManyAttempts(context);
        } else {
            context.failureChallenge(AuthenticationFlowError.INVALID_CREDENTIALS,
                    form(context, null, RegainMessages.TAP_INVALID));
        }
        return false;
    }

    private static void tooManyAttempts(AuthenticationFlowContext context) {
        LOG.infof("Too many wrong Temporary Access Passes for user %s in realm %s; ending the attempt",
                context.getUser().getId(), context.getRealm().getName());
        context.failure(AuthenticationFlowError.INVALID_CREDENTIALS,
                context.form().setError(RegainMessages.TAP_TOO_MANY).createErrorPage(Response.Status.UNAUTHORIZED));
    }

    private static int attempts(AuthenticationSessionModel authSession) {
        String note = authSession.getAuthNote(ATTEMPTS_NOTE);
        if (note == null) {
            return 0;
        }
        try {
            return Integer.parseInt(note);
        } catch (NumberFormatException e) {
            return MAX_ATTEMPTS;
        }
    }

    private static void requireAction(AuthenticationFlowContext context, UserModel user, String requiredAction) {
        RequiredActionProviderModel action = context.getRealm().getRequiredActionProviderByAlias(requiredAction);
        if (action == null || !action.isEnabled()) {
            LOG.warnf("Required action %s is not enabled in realm %s: the user signed in with a Temporary Access Pass"
                    + " will not be asked to register a new method", requiredAction, context.getRealm().getName());
        }
        user.addRequiredAction(requiredAction);
    }
}
