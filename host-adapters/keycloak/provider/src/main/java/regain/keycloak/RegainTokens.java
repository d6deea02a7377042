package regain.keycloak;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * The compact JWS shared with the Regain recovery service: HS256 over a shared secret,
 * base64url without padding, and a distinct {@code typ} per direction so that a request
 * can never be replayed as a result or the other way round.
 *
 * <p>Deliberately independent of Keycloak so that the contract can be tested on its own.
 */
public final class RegainTokens {

    /** The {@code typ} of the request Keycloak signs. */
    public static final String REQUEST_TYP = "regain-request+jwt";
    /** The {@code typ} of the result the recovery service signs. */
    public static final String RESULT_TYP = "regain-result+jwt";
    /** Shortest shared secret accepted, in characters; the service applies the same rule. */
    public static final int MIN_SECRET_CHARS = 32;
    /** Largest token accepted; a result travels through a browser form. */
    public static final int MAX_TOKEN_CHARS = 8 * 1024;

    private static final String ALG = "HS256";
    private static final String MAC_ALGORITHM = "HmacSHA256";
    private static final Base64.Encoder B64 = Base64.getUrlEncoder().withoutPadding();
    private static final Base64.Decoder B64D = Base64.getUrlDecoder();
    private static final SecureRandom RANDOM = new SecureRandom();
    // Duplicate members would let the two sides read different values from one signed text.
    private static final ObjectMapper JSON = new ObjectMapper()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);
    private static final TypeReference<LinkedHashMap<String, Object>> OBJECT = new TypeReference<>() { };

    private RegainTokens() {
    }

    /**
     * The MAC key from the configured shared secret. Surrounding white space is ignored, as
     * the service does, so that a secret pasted with a trailing newline still matches.
     */
    public static byte[] sharedKey(String configured) {
        String text = configured == null ? "" : configured.strip();
        if (text.codePointCount(0, text.length()) < MIN_SECRET_CHARS) {
            throw new IllegalArgumentException(
                    "the shared secret must be at least " + MIN_SECRET_CHARS + " characters");
        }
        return text.getBytes(StandardCharsets.UTF_8);
    }

    /** A fresh 128-bit identifier, base64url. */
    public static String randomId() {
        byte[] bytes = new byte[16];
        RANDOM.nextBytes(bytes);
        return B64.encodeToString(bytes);
    }

    /** A compact JWS of {@code claims} with header {@code {"alg":"HS256","typ":typ}}. */
    public static String sign(Map<String, ?> claims, String typ, byte[] key) {
        Map<String, Object> header = new LinkedHashMap<>();
        header.put("alg", ALG);
        header.put("typ", typ);
        String input = encodeJson(header) + "." + encodeJson(claims);
        return input + "." + B64.encodeToString(mac(key, input));
    }

    /**
     * The claims of {@code token} when its header is exactly HS256 with {@code typ} and its MAC
     * verifies under {@code key}. Claim values are not checked here.
     */
    public static Map<String, Object> verify(String token, String typ, byte[] key) throws TokenException {
        if (token == null || token.isEmpty()) {
            throw new TokenException(TokenException.Reason.MALFORMED, "empty");
        }
        if (token.length() > MAX_TOKEN_CHARS) {
            throw new TokenException(TokenException.Reason.MALFORMED, "too long");
        }
        String[] parts = token.split("\\.", -1);
        if (parts.length != 3) {
            throw new TokenException(TokenException.Reason.MALFORMED, "not three parts");
        }
        Map<String, Object> header = decodeJson(parts[0], "header");
        if (!ALG.equals(header.get("alg"))) {
            throw new TokenException(TokenException.Reason.ALG, "only HS256 is accepted");
        }
        if (header.containsKey("crit")) {
            throw new TokenException(TokenException.Reason.CRIT, "critical header parameters are not supported");
        }
        if (!typ.equals(header.get("typ"))) {
            throw new TokenException(TokenException.Reason.TYP, "expected " + typ);
        }
        byte[] signature = decode(parts[2], "signature");
        byte[] expected = mac(key, parts[0] + "." + parts[1]);
        if (!MessageDigest.isEqual(expected, signature)) {
            throw new TokenException(TokenException.Reason.SIGNATURE, "does not verify");
        }
        return decodeJson(parts[1], "payload");
    }

    /** HMAC-SHA-256 of the ASCII signing input. */
    static byte[] mac(byte[] key, String input) {
        try {
            Mac mac = Mac.getInstance(MAC_ALGORITHM);
            mac.init(new SecretKeySpec(key, MAC_ALGORITHM));
            return mac.doFinal(input.getBytes(StandardCharsets.US_ASCII));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HMAC-SHA-256 is not available", e);
        }
    }

    private static String encodeJson(Object value) {
        try {
            return B64.encodeToString(JSON.writeValueAsBytes(value));
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("claims cannot be written as JSON", e);
        }
    }

    private static byte[] decode(String part, String what) throws TokenException {
        // Padding is not part of the format; accepting it would give one token two spellings.
        if (part.isEmpty() || part.indexOf('=') >= 0) {
            throw new TokenException(TokenException.Reason.MALFORMED, what + " is not base64url");
        }
        try {
            return B64D.decode(part);
        } catch (IllegalArgumentException e) {
            throw new TokenException(TokenException.Reason.MALFORMED, what + " is not base64url");
        }
    }

    private static Map<String, Object> decodeJson(String part, String what) throws TokenException {
        byte[] bytes = decode(part, what);
        try {
            Map<String, Object> value = JSON.readValue(bytes, OBJECT);
            if (value == null) {
                throw new TokenException(TokenException.Reason.MALFORMED, what + " is not a JSON object");
            }
            return value;
        } catch (java.io.IOException e) {
            throw new TokenException(TokenException.Reason.MALFORMED, what + " is not a JSON object");
        }
    }
}
