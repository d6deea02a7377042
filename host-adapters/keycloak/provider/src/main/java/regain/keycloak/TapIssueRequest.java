package regain.keycloak;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;

/**
 * The body of {@code POST /realms/{realm}/regain/users/{userId}/tap}, validated.
 *
 * @param lifetimeSeconds  how long the pass stays valid after issuance
 * @param oneTime          whether the first successful use removes the pass
 * @param length           number of characters of the secret
 * @param notBeforeSeconds how long after issuance the pass becomes usable; 0 for at once
 */
public record TapIssueRequest(long lifetimeSeconds, boolean oneTime, int length, long notBeforeSeconds) {

    /** The largest value of the service's unsigned 32-bit fields. */
    static final long U32_MAX = 0xFFFF_FFFFL;
    /** Largest body read; the real one is well under 200 bytes. */
    static final int MAX_BODY = 4096;

    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    /**
     * Parses and checks a request body.
     *
     * @throws IllegalArgumentException with a message fit to return to the caller
     */
    public static TapIssueRequest parse(String body) {
        if (body == null || body.isBlank()) {
            throw new IllegalArgumentException("a JSON body is required");
        }
        if (body.length() > MAX_BODY) {
            throw new IllegalArgumentException("the body is too large");
        }
        JsonNode root;
        try {
            root = JSON.readTree(body);
        } catch (IOException e) {
            throw new IllegalArgumentException("the body is not valid JSON");
        }
        if (root == null || !root.isObject()) {
            throw new IllegalArgumentException("the body must be a JSON object");
        }
        long lifetime = unsigned(root, "lifetime_seconds", true);
        if (lifetime == 0) {
            throw new IllegalArgumentException("lifetime_seconds must be greater than 0");
        }
        JsonNode oneTime = root.get("one_time");
        if (oneTime == null || !oneTime.isBoolean()) {
            throw new IllegalArgumentException("one_time must be true or false");
        }
        JsonNode length = root.get("length");
        if (length == null || !length.isIntegralNumber() || !length.canConvertToInt()
                || length.intValue() < TapSecrets.MIN_LENGTH || length.intValue() > TapSecrets.MAX_LENGTH) {
            throw new IllegalArgumentException(
                    "length must be an integer from " + TapSecrets.MIN_LENGTH + " to " + TapSecrets.MAX_LENGTH);
        }
        long notBefore = unsigned(root, "not_before_seconds", false);
        return new TapIssueRequest(lifetime, oneTime.booleanValue(), length.intValue(), notBefore);
    }

    private static long unsigned(JsonNode root, String name, boolean required) {
        JsonNode node = root.get(name);
        if (node == null || node.isNull()) {
            if (required) {
                throw new IllegalArgumentException(name + " is required");
            }
            return 0;
        }
        if (!node.isIntegralNumber() || !node.canConvertToLong() || node.longValue() < 0 || node.longValue() > U32_MAX) {
            throw new IllegalArgumentException(name + " must be an integer from 0 to " + U32_MAX);
        }
        return node.longValue();
    }
}
