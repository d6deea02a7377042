package regain.keycloak;

/**
 * Message keys of the theme resources shipped in this jar; the texts are in
 * {@code theme-resources/messages/messages_en.properties} so that a theme can translate them.
 */
final class RegainMessages {

    static final String TAP_INVALID = "regainTapInvalid";
    static final String TAP_TOO_MANY = "regainTapTooManyAttempts";
    static final String IDENTITY_CONFIRMED = "regainIdentityConfirmed";
    static final String NOT_CONFIGURED = "regainRecoveryNotConfigured";
    static final String RECOVERY_FAILED = "regainRecoveryFailed";
    static final String RECOVERY_FAILED_NO_REF = "regainRecoveryFailedNoReference";
    static final String EVALUATION = "regainRecoveryEvaluation";
    static final String RESULT_INVALID = "regainResultInvalid";
    static final String UNEXPECTED = "regainUnexpectedRequest";

    private RegainMessages() {
    }
}
