package regain.keycloak;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

class RegainTokensTest {

    private static final byte[] KEY = "a shared secret of at least thirty-two characters".getBytes(StandardCharsets.UTF_8);
    private static final Base64.Encoder B64 = Base64.getUrlEncoder().withoutPadding();

    private static Map<String, Object> claims() {
        Map<String, Object> claims = new LinkedHashMap<>();
        claims.put("iss", "http://kc.test/realms/r");
        claims.put("aud", "http://regain.test");
        claims.put("jti", "j1");
        claims.put("iat", 1000L);
        claims.put("exp", 1600L);
        claims.put("login", "ada");
        return claims;
    }

    private static String b64(String text) {
        return B64.encodeToString(text.getBytes(StandardCharsets.UTF_8));
    }

    private static TokenException.Reason refusal(String token, String typ, byte[] key) {
        return assertThrows(TokenException.class, () -> RegainTokens.verify(token, typ, key)).reason();
    }

    /** The token with its header replaced; the MAC is recomputed so that only the header is at fault. */
    private static String withHeader(String headerJson) {
        String token = RegainTokens.sign(claims(), RegainTokens.REQUEST_TYP, KEY);
        String input = b64(headerJson) + "." + token.split("\\.")[1];
        return input + "." + B64.encodeToString(RegainTokens.mac(KEY, input));
    }

    @Test
    void signedTokensVerify() throws TokenException {
        String token = RegainTokens.sign(claims(), RegainTokens.REQUEST_TYP, KEY);
        assertEquals(3, token.split("\\.").length);
        assertFalse(token.contains("="));
        Map<String, Object> back = RegainTokens.verify(token, RegainTokens.REQUEST_TYP, KEY);
        assertEquals("ada", back.get("login"));
        assertEquals(1600, ((Number) back.get("exp")).longValue());
        String header = new String(Base64.getUrlDecoder().decode(token.split("\\.")[0]), StandardCharsets.UTF_8);
        assertEquals("{\"alg\":\"HS256\",\"typ\":\"regain-request+jwt\"}", header);
    }

    @Test
    void knownTokenFromTheSpecificationVerifies() throws TokenException {
        // Built by hand: header and claims as the service writes them, MAC with the shared key.
        String input = b64("{\"alg\":\"HS256\",\"typ\":\"regain-result+jwt\"}") + "." + b64("{\"outcome\":\"completed\"}");
        String token = input + "." + B64.encodeToString(RegainTokens.mac(KEY, input));
        assertEquals("completed", RegainTokens.verify(token, RegainTokens.RESULT_TYP, KEY).get("outcome"));
    }

    @Test
    void aWrongKeyIsRefused() {
        String token = RegainTokens.sign(claims(), RegainTokens.REQUEST_TYP, KEY);
        byte[] other = "another shared secret of thirty-two chars!".getBytes(StandardCharsets.UTF_8);
        assertEquals(TokenException.Reason.SIGNATURE, refusal(token, RegainTokens.REQUEST_TYP, other));
    }

    @Test
    void aWrongTypIsRefused() {
        String result = RegainTokens.sign(claims(), RegainTokens.RESULT_TYP, KEY);
        assertEquals(TokenException.Reason.TYP, refusal(result, RegainTokens.REQUEST_TYP, KEY));
        assertEquals(TokenException.Reason.TYP,
                refusal(withHeader("{\"alg\":\"HS256\"}"), RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void otherAlgorithmsAreRefused() {
        String none = b64("{\"alg\":\"none\",\"typ\":\"regain-request+jwt\"}") + "." + b64("{\"login\":\"mallory\"}") + ".";
        assertEquals(TokenException.Reason.ALG, refusal(none, RegainTokens.REQUEST_TYP, KEY));
        assertEquals(TokenException.Reason.ALG,
                refusal(withHeader("{\"alg\":\"none\",\"typ\":\"regain-request+jwt\"}"), RegainTokens.REQUEST_TYP, KEY));
        assertEquals(TokenException.Reason.ALG,
                refusal(withHeader("{\"alg\":\"HS512\",\"typ\":\"regain-request+jwt\"}"), RegainTokens.REQUEST_TYP, KEY));
        assertEquals(TokenException.Reason.ALG,
                refusal(withHeader("{\"typ\":\"regain-request+jwt\"}"), RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void aCritHeaderIsRefused() {
        String token = withHeader("{\"alg\":\"HS256\",\"typ\":\"regain-request+jwt\",\"crit\":[\"exp\"]}");
        assertEquals(TokenException.Reason.CRIT, refusal(token, RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void anAlteredPayloadIsRefused() {
        String[] parts = RegainTokens.sign(claims(), RegainTokens.REQUEST_TYP, KEY).split("\\.");
        Map<String, Object> changed = claims();
        changed.put("login", "mallory");
        String forged = parts[0] + "." + RegainTokens.sign(changed, RegainTokens.REQUEST_TYP, KEY).split("\\.")[1]
                + "." + parts[2];
        assertEquals(TokenException.Reason.SIGNATURE, refusal(forged, RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void anAlteredSignatureIsRefused() {
        String token = RegainTokens.sign(claims(), RegainTokens.REQUEST_TYP, KEY);
        char last = token.charAt(token.length() - 5);
        String forged = token.substring(0, token.length() - 5) + (last == 'A' ? 'B' : 'A') + token.substring(token.length() - 4);
        assertEquals(TokenException.Reason.SIGNATURE, refusal(forged, RegainTokens.REQUEST_TYP, KEY));
        String truncated = token.substring(0, token.length() - 4);
        assertEquals(TokenException.Reason.SIGNATURE, refusal(truncated, RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void malformedTokensAreRefused() {
        String token = RegainTokens.sign(claims(), RegainTokens.REQUEST_TYP, KEY);
        String[] parts = token.split("\\.");
        String validHeader = parts[0];
        String[] malformed = {
            "",
            parts[0] + "." + parts[1],
            token + ".extra",
            "!!." + parts[1] + "." + parts[2],
            validHeader + "." + parts[1] + ".***",
            b64("not json") + "." + parts[1] + "." + parts[2],
            b64("[1,2]") + "." + parts[1] + "." + parts[2],
            validHeader + "=." + parts[1] + "." + parts[2],
            "x".repeat(RegainTokens.MAX_TOKEN_CHARS + 1),
        };
        for (String candidate : malformed) {
            assertEquals(TokenException.Reason.MALFORMED, refusal(candidate, RegainTokens.REQUEST_TYP, KEY),
                    "for " + (candidate.length() > 40 ? candidate.substring(0, 40) + "..." : candidate));
        }
        assertEquals(TokenException.Reason.MALFORMED, refusal(null, RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void aPayloadThatIsNotJsonIsRefusedAfterTheSignature() {
        String input = b64("{\"alg\":\"HS256\",\"typ\":\"regain-request+jwt\"}") + "." + b64("not json");
        String token = input + "." + B64.encodeToString(RegainTokens.mac(KEY, input));
        assertEquals(TokenException.Reason.MALFORMED, refusal(token, RegainTokens.REQUEST_TYP, KEY));
        String duplicate = b64("{\"alg\":\"HS256\",\"typ\":\"regain-request+jwt\"}") + "." + b64("{\"sub\":\"a\",\"sub\":\"b\"}");
        String duplicated = duplicate + "." + B64.encodeToString(RegainTokens.mac(KEY, duplicate));
        assertEquals(TokenException.Reason.MALFORMED, refusal(duplicated, RegainTokens.REQUEST_TYP, KEY));
    }

    @Test
    void sharedSecretsShorterThan32CharactersAreRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> RegainTokens.sharedKey("too short"));
        assertTrue(e.getMessage().contains("at least 32"));
        assertThrows(IllegalArgumentException.class, () -> RegainTokens.sharedKey(null));
        assertThrows(IllegalArgumentException.class, () -> RegainTokens.sharedKey("   " + "x".repeat(31) + "\n"));
        assertArrayEquals("y".repeat(32).getBytes(StandardCharsets.UTF_8), RegainTokens.sharedKey(" " + "y".repeat(32) + "\n"));
    }

    @Test
    void randomIdsAre128BitsOfBase64url() {
        String a = RegainTokens.randomId();
        assertEquals(22, a.length());
        assertTrue(a.matches("[A-Za-z0-9_-]{22}"));
        assertNotEquals(a, RegainTokens.randomId());
    }
}
