package regain.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;

import org.junit.jupiter.api.Test;

class RegainConfigTest {

    private static final String SECRET = "a shared secret of at least thirty-two characters";

    @Test
    void aCompleteConfigurationIsRead() {
        RegainConfig.Recover settings = RegainConfig.recover(Map.of(
                RegainConfig.SERVICE_URL, " https://recover.example.com/ ",
                RegainConfig.SHARED_SECRET, SECRET,
                RegainConfig.REQUIRED_ACTION, "webauthn-register"));
        assertEquals("https://recover.example.com", settings.serviceUrl());
        assertEquals(SECRET.length(), settings.key().length);
        assertEquals("webauthn-register", settings.requiredAction());
    }

    @Test
    void missingOrBadSettingsAreNamed() {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> RegainConfig.recover(null))
                .getMessage().contains("no configuration"));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> RegainConfig.recover(Map.of(RegainConfig.SHARED_SECRET, SECRET)))
                .getMessage().contains(RegainConfig.SERVICE_URL));
        assertTrue(assertThrows(IllegalArgumentException.class,
                () -> RegainConfig.recover(Map.of(RegainConfig.SERVICE_URL, "https://r.test", RegainConfig.SHARED_SECRET, "short")))
                .getMessage().contains("at least 32"));
        for (String url : new String[] {"ftp://r.test", "r.test", "https://r.test/?a=b", "https://r.test/#x", "http:// bad"}) {
            assertThrows(IllegalArgumentException.class, () -> RegainConfig.serviceUrl(url), url);
        }
        assertEquals("http://localhost:8080/regain", RegainConfig.serviceUrl("http://localhost:8080/regain//"));
    }

    @Test
    void theRequiredActionDefaultsToAnAuthenticatorApp() {
        assertEquals("CONFIGURE_TOTP", RegainConfig.requiredAction(null));
        assertEquals("CONFIGURE_TOTP", RegainConfig.requiredAction(Map.of()));
        assertEquals("CONFIGURE_TOTP", RegainConfig.requiredAction(Map.of(RegainConfig.REQUIRED_ACTION, "UPDATE_PASSWORD")));
        assertEquals("webauthn-register", RegainConfig.requiredAction(Map.of(RegainConfig.REQUIRED_ACTION, "webauthn-register")));
    }
}
