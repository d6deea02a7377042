package regain.keycloak;

import org.keycloak.models.KeycloakSession;
import org.keycloak.services.resource.RealmResourceProvider;

/** Serves {@link TapResource} under {@code /realms/{realm}/regain}. */
public class RegainResourceProvider implements RealmResourceProvider {

    private final KeycloakSession session;

    public RegainResourceProvider(KeycloakSession session) {
        this.session = session;
    }

    @Override
    public Object getResource() {
        return new TapResource(session);
    }

    @Override
    public void close() {
    }
}
