package regain.keycloak;

import org.keycloak.credential.CredentialProviderFactory;
import org.keycloak.models.KeycloakSession;

/** Registers the {@code regain-tap} credential type. */
public class TapCredentialProviderFactory implements CredentialProviderFactory<TapCredentialProvider> {

    public static final String PROVIDER_ID = TapCredentialModel.TYPE;

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public TapCredentialProvider create(KeycloakSession session) {
        return new TapCredentialProvider(session);
    }
}
