package regain.keycloak;

import java.net.URI;
import java.net.URISyntaxException;
import java.util.List;
import java.util.Map;

import org.keycloak.provider.ProviderConfigProperty;

/** The configuration properties of the Regain authenticators and how they are read. */
public final class RegainConfig {

    public static final String SERVICE_URL = "service-url";
    public static final String SHARED_SECRET = "shared-secret";
    public static final String REQUIRED_ACTION = "required-action";

    public static final String CONFIGURE_TOTP = "CONFIGURE_TOTP";
    public static final String WEBAUTHN_REGISTER = "webauthn-register";
    public static final List<String> REQUIRED_ACTIONS = List.of(CONFIGURE_TOTP, WEBAUTHN_REGISTER);

    private RegainConfig() {
    }

    /** What the Recover authenticator needs from its configuration. */
    public record Recover(String serviceUrl, byte[] key, String requiredAction) {
    }

    /**
     * The Recover authenticator's settings.
     *
     * @throws IllegalArgumentException naming what is missing or wrong, for the log
     */
    public static Recover recover(Map<String, String> config) {
        if (config == null) {
            throw new IllegalArgumentException("the authenticator has no configuration");
        }
        String serviceUrl = serviceUrl(config.get(SERVICE_URL));
        byte[] key = RegainTokens.sharedKey(config.get(SHARED_SECRET));
        return new Recover(serviceUrl, key, requiredAction(config));
    }

    /**
     * The service URL without trailing slashes: it is compared verbatim with the result's
     * {@code iss}, and the service compares the request's {@code aud} with it the same way.
     */
    static String serviceUrl(String configured) {
        String url = configured == null ? "" : configured.strip();
        while (url.endsWith("/")) {
            url = url.substring(0, url.length() - 1);
        }
        if (url.isEmpty()) {
            throw new IllegalArgumentException(SERVICE_URL + " is not set");
        }
        try {
            URI uri = new URI(url);
            String scheme = uri.getScheme();
            if (!("https".equalsIgnoreCase(scheme) || "http".equalsIgnoreCase(scheme)) || uri.getHost() == null
                    || uri.getRawQuery() != null || uri.getRawFragment() != null) {
                throw new IllegalArgumentException(SERVICE_URL + " must be an http(s) URL without query or fragment");
            }
        } catch (URISyntaxException e) {
            throw new IllegalArgumentException(SERVICE_URL + " is not a valid URL");
        }
        return url;
    }

    /** The required action to put on the user after a pass was accepted; unknown values fall back. */
    public static String requiredAction(Map<String, String> config) {
        String value = config == null ? null : config.get(REQUIRED_ACTION);
        return value != null && REQUIRED_ACTIONS.contains(value.strip()) ? value.strip() : CONFIGURE_TOTP;
    }

    static ProviderConfigProperty requiredActionProperty() {
        ProviderConfigProperty property = new ProviderConfigProperty(REQUIRED_ACTION, "Required action",
                "What the user must set up after signing in with a Temporary Access Pass, before the sign-in"
                        + " completes: an authenticator app (CONFIGURE_TOTP) or a passkey or security key"
                        + " (webauthn-register).",
                ProviderConfigProperty.LIST_TYPE, CONFIGURE_TOTP);
        property.setOptions(REQUIRED_ACTIONS);
        return property;
    }

    static List<ProviderConfigProperty> recoverProperties() {
        ProviderConfigProperty serviceUrl = new ProviderConfigProperty(SERVICE_URL, "Recovery service URL",
                "Public base URL of the Regain recovery service, e.g. https://recover.example.com. Users are sent"
                        + " to {service-url}/recover/keycloak.",
                ProviderConfigProperty.STRING_TYPE, null);
        ProviderConfigProperty secret = new ProviderConfigProperty(SHARED_SECRET, "Shared secret",
                "Secret shared with the recovery service to sign requests and results (HS256), at least "
                        + RegainTokens.MIN_SECRET_CHARS + " characters.",
                ProviderConfigProperty.PASSWORD, null, true);
        return List.of(serviceUrl, secret, requiredActionProperty());
    }
}
