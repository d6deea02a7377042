package regain.keycloak;

import jakarta.ws.rs.POST;
import jakarta.ws.rs.Path;
import jakarta.ws.rs.PathParam;
import jakarta.ws.rs.Produces;
import jakarta.ws.rs.WebApplicationException;
import jakarta.ws.rs.core.MediaType;
import jakarta.ws.rs.core.Response;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.util.LinkedHashMap;
import java.util.Map;

import org.jboss.logging.Logger;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;
import org.keycloak.representations.AccessToken;
import org.keycloak.services.managers.AppAuthManager;
import org.keycloak.services.managers.AuthenticationManager;

/**
 * {@code /realms/{realm}/regain}: the recovery service's way to have Keycloak issue a pass.
 * The pass is hashed with a realm key inside Keycloak, so the service only ever sees the
 * secret it must show to the user once.
 */
public class TapResource {

    static final String MANAGEMENT_CLIENT = "realm-management";
    static final String MANAGE_USERS = "manage-users";

    private static final Logger LOG = Logger.getLogger(TapResource.class);
    private static final ObjectMapper JSON = new ObjectMapper();

    private final KeycloakSession session;

    public TapResource(KeycloakSession session) {
        this.session = session;
    }

    @POST
    @Path("users/{userId}/tap")
    @Produces(MediaType.APPLICATION_JSON)
    public Response issueTap(@PathParam("userId") String userId, String body) {
        AuthenticationManager.AuthResult auth;
        try {
            auth = new AppAuthManager.BearerTokenAuthenticator(session).authenticate();
        } catch (WebApplicationException e) {
            auth = null;
        }
        if (auth == null || auth.token() == null) {
            return json(Response.Status.UNAUTHORIZED, error("unauthorized", null));
        }
        AccessToken.Access management = auth.token().getResourceAccess(MANAGEMENT_CLIENT);
        if (management == null || !management.isUserInRole(MANAGE_USERS)) {
            LOG.warnf("Refused to issue a Temporary Access Pass: client %s lacks %s/%s",
                    auth.token().getIssuedFor(), MANAGEMENT_CLIENT, MANAGE_USERS);
            return json(Response.Status.FORBIDDEN, error("forbidden", null));
        }

        TapIssueRequest request;
        try {
            request = TapIssueRequest.parse(body);
        } catch (IllegalArgumentException e) {
            return json(Response.Status.BAD_REQUEST, error("invalid_request", e.getMessage()));
        }

        RealmModel realm = session.getContext().getRealm();
        UserModel user = userId == null || userId.isBlank() ? null : session.users().getUserById(realm, userId);
        if (user == null) {
            return json(Response.Status.NOT_FOUND, error("user_not_found", null));
        }

        TapCredentialProvider.Issued issued = TapLogin.provider(session).issue(realm, user,
                request.lifetimeSeconds(), request.oneTime(), request.length(), request.notBeforeSeconds());
        LOG.infof("Client %s issued Temporary Access Pass %s for user %s in realm %s (one-time %s, expires at %d)",
                auth.token().getIssuedFor(), issued.id(), user.getId(), realm.getName(), request.oneTime(),
                issued.expiresAt());

        Map<String, Object> answer = new LinkedHashMap<>();
        answer.put("tap_id", issued.id());
        answer.put("secret", issued.secret());
        answer.put("expires_at", issued.expiresAt());
        return json(Response.Status.CREATED, answer);
    }

    private static Map<String, Object> error(String code, String message) {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("error", code);
        if (message != null) {
            body.put("message", message);
        }
        return body;
    }

    private static Response json(Response.Status status, Map<String, Object> body) {
        String text;
        try {
            text = JSON.writeValueAsString(body);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write a JSON answer", e);
        }
        // The answer may carry a secret; no cache along the way may keep it.
        return Response.status(status)
                .type(MediaType.APPLICATION_JSON_TYPE)
                .header("Cache-Control", "no-store")
                .header("Pragma", "no-cache")
                .entity(text)
                .build();
    }
}
