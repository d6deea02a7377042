package regain.keycloak;

import jakarta.ws.rs.core.MultivaluedMap;

import org.keycloak.authentication.AuthenticationFlowContext;
import org.keycloak.authentication.Authenticator;
import org.keycloak.authentication.CredentialValidator;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;

/** Signs a known user in with a Temporary Access Pass. */
public class TapAuthenticator implements Authenticator, CredentialValidator<TapCredentialProvider> {

    @Override
    public TapCredentialProvider getCredentialProvider(KeycloakSession session) {
        return TapLogin.provider(session);
    }

    @Override
    public void authenticate(AuthenticationFlowContext context) {
        context.challenge(TapLogin.form(context, null, null));
    }

    @Override
    public void action(AuthenticationFlowContext context) {
        MultivaluedMap<String, String> form = context.getHttpRequest().getDecodedFormParameters();
        if (form.containsKey("cancel")) {
            context.cancelLogin();
            return;
        }
        String requiredAction = RegainConfig.requiredAction(
                context.getAuthenticatorConfig() == null ? null : context.getAuthenticatorConfig().getConfig());
        TapLogin.submit(context, form.getFirst(TapLogin.FIELD), requiredAction);
    }

    @Override
    public boolean requiresUser() {
        return true;
    }

    /**
     * Any stored pass counts, expired or not. Keycloak offers this authenticator under "Try
     * another way" whenever a credential of its type is stored, and a "not configured" answer
     * after the user picked it ends the login with a setup error; an expired pass instead gets
     * the ordinary "not valid" answer and is removed when it is checked.
     */
    @Override
    public boolean configuredFor(KeycloakSession session, RealmModel realm, UserModel user) {
        return user.credentialManager().getStoredCredentialsByTypeStream(TapCredentialModel.TYPE).findAny().isPresent();
    }

    @Override
    public void setRequiredActions(KeycloakSession session, RealmModel realm, UserModel user) {
        // A pass is issued by the recovery service, never set up by the user.
    }

    @Override
    public void close() {
    }
}
