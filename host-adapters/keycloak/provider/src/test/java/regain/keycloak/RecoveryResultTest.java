package regain.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.LinkedHashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

class RecoveryResultTest {

    private static final String SERVICE = "https://regain.test";
    private static final String REALM = "https://kc.test/realms/r";
    private static final long NOW = 10_000;

    private static Map<String, Object> good() {
        Map<String, Object> claims = new LinkedHashMap<>();
        claims.put("iss", SERVICE);
        claims.put("aud", REALM);
        claims.put("jti", "r-1");
        claims.put("iat", NOW - 5);
        claims.put("exp", NOW + 295);
        claims.put("request", "q-1");
        claims.put("sub", "u-1");
        claims.put("outcome", "completed");
        return claims;
    }

    private static RecoveryResult check(Map<String, Object> claims) throws TokenException {
        return RecoveryResult.check(claims, SERVICE, REALM, "q-1", "u-1", NOW);
    }

    private static TokenException.Reason refusal(String name, Object value) {
        Map<String, Object> claims = good();
        if (value == null) {
            claims.remove(name);
        } else {
            claims.put(name, value);
        }
        return assertThrows(TokenException.class, () -> check(claims)).reason();
    }

    @Test
    void aGoodResultIsAccepted() throws TokenException {
        RecoveryResult result = check(good());
        assertEquals("r-1", result.jti());
        assertEquals(NOW + 295, result.exp());
        assertEquals(RecoveryResult.Outcome.COMPLETED, result.outcome());
        assertNull(result.helpdeskRef());
    }

    @Test
    void outcomesAndTheReferenceAreRead() throws TokenException {
        Map<String, Object> claims = good();
        claims.put("outcome", "failed");
        claims.put("helpdesk_ref", "ABCD-1234");
        RecoveryResult failed = check(claims);
        assertEquals(RecoveryResult.Outcome.FAILED, failed.outcome());
        assertEquals("ABCD-1234", failed.helpdeskRef());
        claims.put("outcome", "evaluation-completed");
        assertEquals(RecoveryResult.Outcome.EVALUATION_COMPLETED, check(claims).outcome());
    }

    @Test
    void referencesThatCouldCarryMarkupAreLeftOut() throws TokenException {
        Map<String, Object> claims = good();
        claims.put("outcome", "failed");
        claims.put("helpdesk_ref", "<b>x</b>");
        assertNull(check(claims).helpdeskRef());
        claims.put("helpdesk_ref", 42);
        assertNull(check(claims).helpdeskRef());
    }

    @Test
    void claimsThatDoNotMatchAreRefused() {
        assertEquals(TokenException.Reason.CLAIM, refusal("iss", "https://other.test"));
        assertEquals(TokenException.Reason.CLAIM, refusal("iss", SERVICE + "/"));
        assertEquals(TokenException.Reason.CLAIM, refusal("aud", "https://kc.test/realms/other"));
        assertEquals(TokenException.Reason.CLAIM, refusal("request", "q-2"));
        assertEquals(TokenException.Reason.CLAIM, refusal("request", null));
        assertEquals(TokenException.Reason.CLAIM, refusal("sub", "u-2"));
        assertEquals(TokenException.Reason.CLAIM, refusal("sub", 7));
        assertEquals(TokenException.Reason.CLAIM, refusal("jti", null));
        assertEquals(TokenException.Reason.CLAIM, refusal("jti", ""));
        assertEquals(TokenException.Reason.CLAIM, refusal("outcome", "succeeded"));
        assertEquals(TokenException.Reason.CLAIM, refusal("exp", "later"));
        assertEquals(TokenException.Reason.CLAIM, refusal("iat", 1.5));
    }

    @Test
    void aResultOutsideItsLifetimeIsRefused() {
        assertEquals(TokenException.Reason.EXPIRED, refusal("exp", NOW));
        assertEquals(TokenException.Reason.EXPIRED, refusal("exp", NOW - 1));
        assertEquals(TokenException.Reason.EXPIRED, refusal("iat", NOW + RecoveryResult.MAX_CLOCK_SKEW + 1));
    }

    @Test
    void aRequestOfAnotherSessionIsRefused() {
        assertThrows(TokenException.class, () -> RecoveryResult.check(good(), SERVICE, REALM, null, "u-1", NOW));
    }

    @Test
    void resultsSignedAndParsedEndToEnd() throws TokenException {
        byte[] key = RegainTokens.sharedKey("a shared secret of at least thirty-two characters");
        String token = RegainTokens.sign(good(), RegainTokens.RESULT_TYP, key);
        Map<String, Object> claims = RegainTokens.verify(token, RegainTokens.RESULT_TYP, key);
        assertEquals(RecoveryResult.Outcome.COMPLETED, check(claims).outcome());
    }
}
