package regain.keycloak;

/**
 * A recovery token that was refused. The reason is for the log only: the browser is shown
 * one generic message so that a probe learns nothing about which check failed.
 */
public final class TokenException extends Exception {

    private static final long serialVersionUID = 1L;

    /** Which check refused the token. */
    public enum Reason {
        /** Not three base64url parts of JSON, or too long. */
        MALFORMED,
        /** Another algorithm than HS256. */
        ALG,
        /** A {@code crit} header, which this verifier cannot honour. */
        CRIT,
        /** Another {@code typ} than expected, e.g. a request presented as a result. */
        TYP,
        /** The MAC does not verify. */
        SIGNATURE,
        /** A claim is missing or has another value than expected. */
        CLAIM,
        /** Past {@code exp}, or issued in the future. */
        EXPIRED,
        /** The token was already accepted once. */
        REPLAYED
    }

    private final Reason reason;

    public TokenException(Reason reason, String detail) {
        super(reason.name().toLowerCase(java.util.Locale.ROOT) + ": " + detail);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
