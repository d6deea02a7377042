package regain.keycloak;

import java.util.Map;
import java.util.regex.Pattern;

/**
 * A verified result token from the recovery service, after its claims were checked against
 * the authentication session it must belong to.
 *
 * @param jti         the result's own id, for single use
 * @param exp         when the result expires, epoch seconds
 * @param outcome     how the recovery ended
 * @param helpdeskRef a reference the user can quote to the helpdesk, or {@code null}
 */
public record RecoveryResult(String jti, long exp, Outcome outcome, String helpdeskRef) {

    /** Accepted clock difference for {@code iat}, in seconds. */
    public static final long MAX_CLOCK_SKEW = 60;

    private static final int MAX_TEXT_CLAIM = 2048;
    // The reference is shown to the user; anything outside this shape is left out rather than
    // trusted to the page's escaping.
    private static final Pattern HELPDESK_REF = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._-]{0,63}");

    /** How the recovery ended, as the service reports it. */
    public enum Outcome {
        /** Identity confirmed and a pass was issued and shown to the user. */
        COMPLETED("completed"),
        /** Identity not confirmed. */
        FAILED("failed"),
        /** Evaluation mode: the check was recorded, no pass was issued. */
        EVALUATION_COMPLETED("evaluation-completed");

        private final String wire;

        Outcome(String wire) {
            this.wire = wire;
        }

        public String wire() {
            return wire;
        }

        static Outcome fromWire(String value) {
            for (Outcome outcome : values()) {
                if (outcome.wire.equals(value)) {
                    return outcome;
                }
            }
            return null;
        }
    }

    /**
     * Checks the claims of a result whose signature and header were verified already.
     *
     * @param claims      the verified claims
     * @param serviceUrl  the configured service URL, which must be the issuer
     * @param realmIssuer this realm's issuer URL, which must be the audience
     * @param requestJti  the id of the request this authentication session sent
     * @param userId      the user being authenticated
     * @param now         the current time, epoch seconds
     */
    public static RecoveryResult check(Map<String, Object> claims, String serviceUrl, String realmIssuer,
            String requestJti, String userId, long now) throws TokenException {
        expectEqual(claims, "iss", serviceUrl);
        expectEqual(claims, "aud", realmIssuer);
        long exp = time(claims, "exp");
        long iat = time(claims, "iat");
        if (exp <= now) {
            throw new TokenException(TokenException.Reason.EXPIRED, "exp is in the past");
        }
        if (iat > now + MAX_CLOCK_SKEW) {
            throw new TokenException(TokenException.Reason.EXPIRED, "iat is in the future");
        }
        // Binds the result to the request this very authentication session sent out.
        expectEqual(claims, "request", requestJti);
        expectEqual(claims, "sub", userId);
        String jti = text(claims, "jti");
        Outcome outcome = Outcome.fromWire(text(claims, "outcome"));
        if (outcome == null) {
            throw new TokenException(TokenException.Reason.CLAIM, "outcome is not a known value");
        }
        Object ref = claims.get("helpdesk_ref");
        String helpdeskRef = ref instanceof String s && HELPDESK_REF.matcher(s).matches() ? s : null;
        return new RecoveryResult(jti, exp, outcome, helpdeskRef);
    }

    private static void expectEqual(Map<String, Object> claims, String name, String expected)
            throws TokenException {
        String actual = text(claims, name);
        if (expected == null || !expected.equals(actual)) {
            throw new TokenException(TokenException.Reason.CLAIM, name + " does not match");
        }
    }

    private static String text(Map<String, Object> claims, String name) throws TokenException {
        if (claims.get(name) instanceof String s && !s.isEmpty() && s.length() <= MAX_TEXT_CLAIM) {
            return s;
        }
        throw new TokenException(TokenException.Reason.CLAIM, name + " is missing or not a string");
    }

    private static long time(Map<String, Object> claims, String name) throws TokenException {
        Object value = claims.get(name);
        if (value instanceof Integer || value instanceof Long || value instanceof Short) {
            return ((Number) value).longValue();
        }
        throw new TokenException(TokenException.Reason.CLAIM, name + " is missing or not an integer");
    }
}
